//! A flow's parameters keep its signature's order (issue 22), end to end
//! through the real binary: `sluice inspect`, `deployment inspect` (CLI and
//! API), a deployment's and a run's parameters, the unknown-parameter
//! message and the web UI's custom-run form. The guest is `typed` of
//! `tests/guests/ui-fixtures`, whose signature is
//! `name, times, ratio, dry_run, volume, target, labels`: far from
//! alphabetical, which is what a sorted map gave before.

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use support::http::get;
use support::{Sluice, guest, texts};

const SIGNATURE: [&str; 7] = ["name", "times", "ratio", "dry_run", "volume", "target", "labels"];

fn ok(output: &std::process::Output, what: &str) -> String {
    let (stdout, stderr) = texts(output);
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    stdout
}

/// The keys of a JSON object, in the order the text holds them.
fn keys(object: &Value) -> Vec<&str> {
    object.as_object().unwrap_or_else(|| panic!("not an object: {object}")).keys().map(String::as_str).collect()
}

/// Where each of `needles` first appears in `text`, asserting it does.
fn positions(text: &str, needles: &[String]) -> Vec<usize> {
    needles.iter().map(|n| text.find(n.as_str()).unwrap_or_else(|| panic!("no `{n}` in:\n{text}"))).collect()
}

fn in_order(text: &str, needles: &[String], what: &str) {
    let at = positions(text, needles);
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{what}: {needles:?} are not in this order:\n{text}");
}

#[test]
fn parameters_show_in_the_flows_signature_order_everywhere() {
    let sluice = Sluice::new();
    let fixtures = guest("ui_fixtures_flow");
    let component = fixtures.to_str().unwrap();

    // `sluice inspect`: the schema as the guest declared it.
    let inspected = ok(&sluice.run(&["inspect", component]), "inspect");
    let typed = inspected.split("\n  typed").nth(1).expect("the typed flow").split("\n  slow").next().unwrap();
    let quoted: Vec<String> = SIGNATURE.iter().map(|k| format!("\"{k}\": {{")).collect();
    in_order(typed, &quoted, "sluice inspect");
    let json: Value = serde_json::from_str(&ok(&sluice.run(&["inspect", component, "--output", "json"]), "inspect"))
        .expect("inspect --output json");
    let flow = json["flows"].as_array().unwrap().iter().find(|f| f["name"] == "typed").unwrap();
    assert_eq!(keys(&flow["parameters_schema"]["properties"]), SIGNATURE);

    // A deployment keeps its parameters in that order however they were given.
    let args = ["deploy", component, "--flow", "typed", "--name", "form", "--param", "labels=[\"x\"]"];
    ok(&sluice.command().args(args).args(["--param", "name=Ada"]).output().unwrap(), "deploy");
    let detail: Value =
        serde_json::from_str(&ok(&sluice.run(&["deployment", "inspect", "typed/form"]), "deployment inspect")).unwrap();
    assert_eq!(keys(&detail["parameters_schema"]["properties"]), SIGNATURE, "{detail:#}");
    assert_eq!(keys(&detail["parameters"]), ["name", "labels"], "{detail:#}");

    // A run's parameters: given, the deployment's and defaults, in the flow's order.
    let run = ok(&sluice.run(&["run", "typed/form", "--param", "dry_run=true"]), "run");
    let line = run.lines().find(|l| l.trim_start().starts_with("parameters:")).expect("the parameters line");
    let quoted: Vec<String> = SIGNATURE.iter().map(|k| format!("\"{k}\":")).collect();
    in_order(line, &quoted, "the run's parameters");

    // The unknown-parameter message lists them in that order.
    let output = sluice.run(&["run", "typed/form", "--param", "nam=1"]);
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let expected = format!("unknown parameter `nam` for flow `typed`; it takes: {}", SIGNATURE.join(", "));
    assert!(stderr.contains(&expected), "expected `{expected}` in:\n{stderr}");

    // Through a server: the API's deployment and the UI's custom-run form.
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let (status, detail) = get(&address, "/api/v1/deployments/typed/form");
    assert_eq!(status, 200, "{detail}");
    assert_eq!(keys(&detail["parameters_schema"]["properties"]), SIGNATURE, "{detail:#}");
    let remote = sluice.remote(&address).args(["deployment", "inspect", "typed/form"]).output().unwrap();
    let detail: Value = serde_json::from_str(&ok(&remote, "remote deployment inspect")).unwrap();
    assert_eq!(keys(&detail["parameters_schema"]["properties"]), SIGNATURE, "{detail:#}");
    let remote = sluice.remote(&address).args(["run", "typed/form", "--param", "nam=1"]).output().unwrap();
    assert!(texts(&remote).1.contains(&expected), "{}", texts(&remote).1);

    let form = page(&address, &sluice.admin_token(), "/deployments/typed/form/custom-run");
    let fields: Vec<String> = SIGNATURE.iter().map(|k| format!("data-field=\"{k}\"")).collect();
    in_order(&form, &fields, "the custom-run form");
}

/// A web UI page's HTML, signed in with `token`.
fn page(address: &str, token: &str, path: &str) -> String {
    let encoded: String = token
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let signin = http(address, "POST", "/signin", None, &format!("token={encoded}&next=%2F"));
    let cookie = signin
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("set-cookie: sluice_session=").then(|| l[12..].to_string()))
        .unwrap_or_else(|| panic!("not signed in:\n{signin}"));
    let cookie = cookie.split(';').next().unwrap().to_string();
    let answer = http(address, "GET", path, Some(&cookie), "");
    assert!(answer.starts_with("HTTP/1.1 200"), "GET {path}:\n{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        support::http::dechunk(body)
    } else {
        body.to_string()
    }
}

/// One request over HTTP/1.1; the whole answer, head and body.
fn http(address: &str, method: &str, path: &str, cookie: Option<&str>, form: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{cookie}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}
