//! The web UI in a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `tests/ui/node_modules`, installed by `make test`)
//! against a real `sluice server` on 127.0.0.1. Each test deploys what its
//! scenario needs, starts the server and runs `tests/ui/browser.mjs NAME`,
//! which fails on any failed check.

mod support;

use std::process::Command;
use support::{Sluice, guest, repo};

/// The deployments every scenario may use.
const DEPLOYMENTS: &[(&str, &str, &str, &[&str])] = &[
    ("hello_flow", "hello", "leo", &["--param", "name=Leo", "--interval", "60", "--tag", "demo"]),
    ("hello_flow", "hello", "marvin", &["--param", "name=Marvin", "--cron", "0 2 * * *", "--timezone", "Europe/Paris"]),
    ("pipeline_flow", "pipeline", "classic", &[]),
    ("hostile_flow", "spin_flow", "forever", &[]),
    ("ui_fixtures_flow", "xss", "markup", &[]),
    ("ui_fixtures_flow", "typed", "form", &["--param", "name=Ada"]),
    ("ui_fixtures_flow", "slow", "steps", &["--param", "steps=5", "--param", "interval_ms=300"]),
    ("pause_flow", "gate", "release", &["--allow-host", "127.0.0.1:9"]),
];

/// Tokens made for a test: the default tenant's admin and viewer, and another tenant's admin.
struct Tokens {
    admin: String,
    viewer: String,
    other: String,
}

fn token(sluice: &Sluice, tenant: &str, role: &str) -> String {
    let output = sluice.run(&["token", "create", "--tenant", tenant, "--role", role]);
    assert!(output.status.success(), "token create: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn tokens(sluice: &Sluice) -> Tokens {
    let output = sluice.run(&["tenant", "create", "other"]);
    assert!(output.status.success(), "tenant create: {}", String::from_utf8_lossy(&output.stderr));
    Tokens {
        admin: token(sluice, "default", "admin"),
        viewer: token(sluice, "default", "viewer"),
        other: token(sluice, "other", "admin"),
    }
}

fn prepared() -> Sluice {
    let sluice = Sluice::new();
    for (component, flow, name, extra) in DEPLOYMENTS {
        let path = guest(component);
        let mut args = vec!["deploy", path.to_str().unwrap(), "--flow", flow, "--name", name];
        args.extend_from_slice(extra);
        let output = sluice.run(&args);
        assert!(output.status.success(), "deploying {flow}/{name}: {}", String::from_utf8_lossy(&output.stderr));
    }
    sluice
}

/// Runs one browser scenario against a fresh server; panics with its output when it fails.
fn scenario(name: &str) {
    let sluice = prepared();
    let tokens = tokens(&sluice);
    let (_server, address) = sluice.server(&[]);
    let output = node(name, &tokens, &[("SLUICE_UI_URL", format!("http://{address}").as_ref())]);
    assert_passed(name, &output);
}

/// Runs `node browser.mjs NAME` with `env`; the server binary and the compile cache are passed on too.
fn node(name: &str, tokens: &Tokens, env: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    let folder = repo().join("tests/ui");
    assert!(
        folder.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `make ui-deps` (npm ci in tests/ui)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run `make ui-deps` (apt-get install chromium) or set CHROMIUM"
    );
    let mut command = Command::new("node");
    command
        .current_dir(&folder)
        .args(["browser.mjs", name])
        .env("CHROMIUM", &chromium)
        .env("SLUICE_BIN", env!("CARGO_BIN_EXE_sluice"))
        .env("SLUICE_CACHE_DIR", repo().join("target/test-compile-cache"))
        .env("SLUICE_UI_TOKEN", &tokens.admin)
        .env("SLUICE_API_TOKEN", &tokens.admin)
        .env("SLUICE_UI_VIEWER_TOKEN", &tokens.viewer)
        .env("SLUICE_UI_OTHER_TOKEN", &tokens.other)
        .env_remove("SLUICE_API_URL");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("running node (is Node.js installed?)")
}

fn assert_passed(name: &str, output: &std::process::Output) {
    let (stdout, stderr) = support::texts(output);
    assert!(output.status.success(), "browser scenario `{name}` failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("passed"), "{stdout}\n{stderr}");
}

#[test]
fn deployments_are_listed_toggled_and_run_live() {
    scenario("deployments");
}

#[test]
fn a_run_page_follows_states_and_logs_live() {
    scenario("live");
}

#[test]
fn custom_run_refuses_wrong_types_inline_and_creates_nothing() {
    scenario("custom");
}

#[test]
fn the_pipeline_timeline_shows_subflows_and_retries() {
    scenario("pipeline");
}

#[test]
fn a_paused_run_resumes_from_the_form_its_schema_generates() {
    scenario("resume");
}

#[test]
fn cancel_stops_an_infinite_loop() {
    scenario("cancel");
}

#[test]
fn guest_markup_is_shown_as_text_and_never_runs() {
    scenario("markup");
}

#[test]
fn signing_in_needs_a_valid_token_and_sets_a_strict_cookie() {
    scenario("signin");
}

#[test]
fn a_viewer_gets_no_buttons_and_cannot_post() {
    scenario("viewer");
}

#[test]
fn a_run_page_reconnects_after_the_server_restarts() {
    // This scenario starts (and restarts) the server itself.
    let sluice = prepared();
    let tokens = tokens(&sluice);
    let output = node("reconnect", &tokens, &[("SLUICE_HOME", sluice.home.path().as_os_str())]);
    assert_passed("reconnect", &output);
}

/// Screenshots of the main pages at desktop and phone width, written to
/// `target/screenshots` (`make screenshots` copies them to docs/screenshots
/// for the README); the script starts a few runs itself, from the
/// deployments page, and fails if a page does not render.
#[test]
fn screenshots_of_the_main_pages_render() {
    let sluice = prepared();
    let trap = guest("hostile_flow");
    let output = sluice.run(&["deploy", trap.to_str().unwrap(), "--flow", "trap", "--name", "boom"]);
    assert!(output.status.success());
    let tokens = tokens(&sluice);
    let (_server, address) = sluice.server(&[]);
    let output = Command::new("node")
        .current_dir(repo().join("tests/ui"))
        .arg("screenshots.mjs")
        .env("SLUICE_UI_URL", format!("http://{address}"))
        .env("SLUICE_UI_TOKEN", &tokens.admin)
        .env("SCREENSHOT_DIR", support::target_dir().join("screenshots"))
        .output()
        .expect("running node");
    let (stdout, stderr) = support::texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
}

#[test]
fn a_second_tenant_sees_nothing_of_the_first() {
    scenario("tenants");
}

#[test]
fn first_hour_sign_in_chart_durations_and_schedule_editing() {
    scenario("firsthour");
}
