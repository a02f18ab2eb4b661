//! The CLI against a server (`SLUICE_API_URL`): the same commands, the same
//! answers, with nothing stored on the CLI's side.

mod support;

use serde_json::Value;
use support::{Sluice, guest, texts};

/// Runs the CLI in its own empty home, talking to the server at `address`.
fn remote(client: &Sluice, address: &str, args: &[&str]) -> std::process::Output {
    client.remote(address).args(args).output().unwrap()
}

fn ok(client: &Sluice, address: &str, args: &[&str]) -> String {
    let output = remote(client, address, args);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "sluice {args:?}:\n{stdout}\n{stderr}");
    stdout
}

#[test]
fn the_cli_drives_a_server_the_same_way_it_drives_the_embedded_store() {
    let server_side = Sluice::new();
    let (_server, address) = server_side.server(&[]);
    let client = Sluice::new();
    let hello = guest("hello_flow");
    let hello = hello.to_str().unwrap();

    let digest = ok(&client, &address, &["push", hello]).trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let deployed = ok(&client, &address, &["deploy", hello, "--flow", "hello", "--name", "leo", "--param", "name=Leo"]);
    assert!(deployed.contains("hello/leo created"), "{deployed}");
    assert!(ok(&client, &address, &["deployment", "ls"]).contains("hello/leo"));

    let watched = ok(&client, &address, &["run", "hello/leo", "--param", "name=Zaphod", "--watch"]);
    assert!(watched.contains("Task run 'say_hello-0' - Hello Zaphod!"), "{watched}");
    assert!(watched.contains("Finished in state Completed()"), "{watched}");

    let runs: Value = serde_json::from_str(&ok(&client, &address, &["flow-run", "ls", "--output", "json"])).unwrap();
    assert_eq!(runs[0]["state"], "Completed");
    let name = runs[0]["name"].as_str().unwrap();
    let inspected: Value = serde_json::from_str(&ok(&client, &address, &["flow-run", "inspect", name])).unwrap();
    assert_eq!(inspected["task_runs"][0]["task_run"]["name"], "say_hello-0");
    assert!(ok(&client, &address, &["flow-run", "logs", name]).contains("Hello Zaphod!"));

    ok(&client, &address, &["work-pool", "create", "remote-pool"]);
    assert!(ok(&client, &address, &["work-pool", "ls"]).contains("remote-pool"));

    let later = ok(&client, &address, &["run", "hello/leo", "--start-in", "1h"]);
    let id = later.lines().find_map(|l| l.trim().strip_prefix("id:")).unwrap().trim().to_string();
    assert!(ok(&client, &address, &["flow-run", "cancel", &id]).contains("Cancelled"));

    // Everything lives on the server: the client's own home holds no database.
    assert!(!client.home.path().join("sluice.db").exists());
    let local = server_side.run(&["deployment", "ls"]);
    assert!(String::from_utf8_lossy(&local.stdout).contains("hello/leo"), "the server's store has it");

    let output = remote(&client, &address, &["run", "hello/nope"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(texts(&output).1.contains("no deployment `hello/nope`"));
    let output =
        client.command().env("SLUICE_API_URL", "http://127.0.0.1:9").args(["deployment", "ls"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(texts(&output).1.contains("cannot be reached"), "{}", texts(&output).1);
}

#[test]
fn login_saves_the_server_for_later_commands_and_logout_forgets_it() {
    let server_side = Sluice::new();
    let hello = guest("hello_flow");
    let deployed = server_side.run(&[
        "deploy",
        hello.to_str().unwrap(),
        "--flow",
        "hello",
        "--name",
        "leo",
        "--param",
        "name=Leo",
    ]);
    assert!(deployed.status.success());
    let (_server, address) = server_side.server(&[]);
    let client = Sluice::new();

    let refused = client.run(&["login", "--api", "http://127.0.0.1:9"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(texts(&refused).1.contains("cannot be reached"));
    assert!(!client.home.path().join("profile.json").exists(), "no profile for a server that does not answer");

    let tokenless = client.run(&["login", "--api", &format!("http://{address}")]);
    assert!(tokenless.status.success(), "a server may be saved before a token: {}", texts(&tokenless).1);
    let refused = client.run(&["deployment", "ls"]);
    assert!(!refused.status.success());
    assert!(texts(&refused).1.contains("needs a token"), "{}", texts(&refused).1);

    let token = server_side.admin_token();
    let login = client.run(&["login", "--api", &format!("http://{address}"), "--token", &token]);
    assert!(login.status.success(), "{}", texts(&login).1);
    let listed = client.run(&["deployment", "ls"]);
    assert!(texts(&listed).0.contains("hello/leo"), "commands go to the saved server: {}", texts(&listed).0);

    assert!(client.run(&["logout"]).status.success());
    let listed = client.run(&["deployment", "ls"]);
    assert!(!texts(&listed).0.contains("hello/leo"), "back on the (empty) embedded store");
}
