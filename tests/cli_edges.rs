//! The command line at its edges: a stdout closed by the reader, a file
//! larger than any store accepts, and the operator's last admin token.

mod support;

use serde_json::json;
use support::http::{get, post, request};
use support::{Sluice, guest, texts};

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let sluice = Sluice::new();
    // The reading end is closed before the command prints its first line.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = sluice
        .command()
        .args(["inspect", guest("hello_flow").to_str().unwrap()])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim(), "", "nothing to say about a reader that left");
    assert_eq!(output.status.code(), Some(141), "the status a SIGPIPE gives in a shell");
}

#[test]
fn a_file_past_the_artifact_limit_is_refused_before_it_is_read_or_sent() {
    let sluice = Sluice::new();
    let big = sluice.home.path().join("big.wasm");
    // Sparse: 300 MiB on paper, nothing on disk.
    std::fs::File::create(&big).unwrap().set_len(300 << 20).unwrap();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    for command in [sluice.command(), sluice.remote(&address)] {
        let mut command = command;
        let output = command.args(["push", big.to_str().unwrap()]).output().unwrap();
        let (_, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("is 300 MiB; components are limited to 256 MiB"), "{stderr}");
    }
}

#[test]
fn the_operators_last_admin_token_cannot_be_revoked() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let (status, tokens) = get(&address, "/api/v1/tokens");
    assert_eq!(status, 200, "{tokens}");
    let admins: Vec<String> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["tenant"] == "default" && t["role"] == "admin" && t["revoked"].is_null())
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(admins.len(), 1, "{tokens}");
    let (status, body) = request(&address, "DELETE", &format!("/api/v1/tokens/{}", admins[0]), None);
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("last admin token"), "{body}");
    assert_eq!(get(&address, "/api/v1/tokens").0, 200, "the operator still gets in");

    // With a second admin token, the first may go.
    let (status, made) = post(&address, "/api/v1/tokens", &json!({ "tenant": "default", "role": "admin" }).to_string());
    assert_eq!(status, 201, "{made}");
    let (status, body) = request(&address, "DELETE", &format!("/api/v1/tokens/{}", admins[0]), None);
    assert_eq!(status, 204, "{body}");
}
