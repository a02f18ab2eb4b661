//! The Python SDK end to end: `sluice build` turns `guest-sdk/python` flows
//! (the `examples/python-*` and `tests/guests/python-*`) into components, and
//! they run through the real binary and a server: parameters checked against
//! the schema the SDK generated, typed inputs, retries, tracebacks in the log,
//! fatal errors, submit/map, subflows, caching, the run context, and Python
//! guests that loop or allocate without end, contained; `pause` for typed
//! input resumed through a server, and `emit_event` (tests/support/paused.rs).

#[path = "support/paused.rs"]
mod paused;
mod support;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};
use support::http::{get, post};
use support::{Sluice, eventually, repo, target_dir, texts};

/// Toolchains and cached builds shared by every test (componentize-py is installed once).
fn toolchain_dir() -> PathBuf {
    target_dir().join("sluice-toolchains")
}

/// `sluice build ARGS…` with the shared toolchain folder.
fn sluice_build(sluice: &Sluice, args: &[&str]) -> Output {
    sluice.command().env("SLUICE_TOOLCHAIN_DIR", toolchain_dir()).arg("build").args(args).output().unwrap()
}

/// The component of a Python flow (`examples/python-map/flow.py`), built by `sluice build` once per test process.
fn python_component(source: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(source) {
        return path.clone();
    }
    let name = Path::new(source).parent().unwrap().file_name().unwrap().to_string_lossy().replace('-', "_");
    let out = target_dir().join("wasm32-wasip2").join("guest").join(format!("{name}.wasm"));
    let file = repo().join(source);
    let output = sluice_build(&Sluice::new(), &[file.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "sluice build {source} failed:\n{stdout}\n{stderr}");
    built.insert(source.to_string(), out.clone());
    out
}

#[test]
fn the_sdk_unit_tests_pass_in_plain_python() {
    let output = std::process::Command::new(std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into()))
        .args(["-m", "unittest", "discover", "-s"])
        .arg(repo().join("guest-sdk/python/tests"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("running python3");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("OK"), "{stderr}");
}

#[test]
fn build_prints_the_path_and_digest_and_the_component_describes_the_decorated_functions() {
    let sluice = Sluice::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("squares.wasm");
    let source = repo().join("examples/python-map/flow.py");
    let output = sluice_build(&sluice, &[source.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    let digest = hex::encode(Sha256::digest(std::fs::read(&out).unwrap()));
    assert_eq!(stdout.trim(), format!("{} sha256:{digest}", out.display()));

    let inspected = sluice.run(&["inspect", out.to_str().unwrap(), "--output", "json"]);
    let (stdout, stderr) = texts(&inspected);
    assert!(inspected.status.success(), "{stderr}");
    let info: Value = serde_json::from_str(&stdout).unwrap();
    let flow = &info["flows"][0];
    assert_eq!(flow["name"], "sum_of_squares");
    assert_eq!(flow["description"], "Squares every number in parallel, then adds the squares.");
    let schema = &flow["parameters_schema"];
    assert_eq!(schema["properties"]["numbers"]["items"], json!({ "type": "integer" }));
    assert_eq!(schema["properties"]["numbers"]["default"], json!([1, 2, 3, 4]));
    let square = info["tasks"].as_array().unwrap().iter().find(|t| t["name"] == "square").unwrap();
    assert_eq!(square["policy"]["cache"], true, "{square}");
    assert_eq!(square["policy"]["cache_expiration_ms"], 3_600_000, "{square}");
}

#[test]
fn flow_dir_bundles_the_modules_a_flow_imports() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("announcer");
    std::fs::create_dir_all(project.join("words")).unwrap();
    std::fs::write(project.join("words/__init__.py"), "").unwrap();
    std::fs::write(project.join("words/loud.py"), "def shout(text: str) -> str:\n    return text.upper() + '!'\n")
        .unwrap();
    let flow = "from sluice import flow, task\nfrom words.loud import shout\n\n\n@task\ndef loud(text: str) -> str:\n    \
                return shout(text)\n\n\n@flow\ndef announce(text: str = \"hello\") -> str:\n    return loud(text)\n";
    std::fs::write(project.join("flow.py"), flow).unwrap();
    let out = dir.path().join("announce.wasm");
    let sluice = Sluice::new();
    let output = sluice_build(&sluice, &["--flow-dir", project.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", texts(&output).1);
    let (code, report) = sluice.exec_json(&out, &["--param", "text=ship"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["flow_run"]["result"], "SHIP!");
}

/// Runs `sluice build` on `source` written to a fresh folder as `name`; returns (exit code, stderr).
fn build_source(name: &str, source: &str) -> (i32, String, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let file = dir.join(name);
    std::fs::write(&file, source).unwrap();
    let out = dir.join("out.wasm");
    let output = sluice_build(&Sluice::new(), &[file.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    (output.status.code().unwrap(), texts(&output).1, file)
}

#[test]
fn build_errors_name_the_file_and_line() {
    let (code, stderr, file) = build_source("broken.py", "from sluice import flow\n\n@flow\ndef f(:\n    pass\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{}:4", file.display())) && stderr.contains("syntax error"), "{stderr}");

    let (code, stderr, file) = build_source("plain.py", "def f(x: int) -> int:\n    return x\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{}: no @flow found", file.display())), "{stderr}");

    let source = "from sluice import flow\n\n\n@flow\ndef f(items: set[int]) -> int:\n    return len(items)\n";
    let (code, stderr, file) = build_source("typed.py", source);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{}:4", file.display())), "{stderr}");
    assert!(stderr.contains("parameter `items`") && stderr.contains("set"), "{stderr}");

    let (code, stderr, file) = build_source("seed.py", "from prefect import flow\n\n@flow\ndef f():\n    pass\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{}:1", file.display())), "{stderr}");
    assert!(stderr.contains("from sluice import flow, task"), "{stderr}");

    // JavaScript goes to its own builder, which names what is missing.
    let (code, stderr, _) = build_source("flow.js", "export function f() {}\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("does not import from 'sluice-sdk'"), "{stderr}");
}

#[test]
fn a_missing_toolchain_says_what_to_install() {
    let sluice = Sluice::new();
    let empty = tempfile::tempdir().unwrap();
    let output = sluice
        .command()
        .env("SLUICE_TOOLCHAIN_DIR", empty.path())
        .env("SLUICE_PYTHON", "/nonexistent/python3")
        .args(["build", repo().join("examples/python-map/flow.py").to_str().unwrap()])
        .current_dir(empty.path())
        .output()
        .unwrap();
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Installing componentize-py 0.25.1"), "{stderr}");
    assert!(stderr.contains("needs Python 3.10 or newer") && stderr.contains("SLUICE_PYTHON"), "{stderr}");
}

/// The server's view of one run, once it has ended.
fn ended(address: &str, id: &str) -> Value {
    eventually(120, &format!("run {id} to end"), || {
        let (_, run) = get(address, &format!("/api/v1/flow-runs/{id}"));
        run["flow_run"]["ended"].is_string().then_some(run)
    })
}

fn start(address: &str, deployment: &str, parameters: Value) -> String {
    let (status, run) = post(
        address,
        &format!("/api/v1/deployments/{deployment}/runs"),
        &json!({ "parameters": parameters }).to_string(),
    );
    assert_eq!(status, 201, "{deployment}: {run}");
    run["id"].as_str().unwrap().to_string()
}

fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["task_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["task_run"])
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task run {name} in {run:#}"))
}

fn logs(address: &str, id: &str) -> Vec<(String, String)> {
    let (_, logs) = get(address, &format!("/api/v1/flow-runs/{id}/logs"));
    logs.as_array()
        .unwrap()
        .iter()
        .map(|l| (l["level"].as_str().unwrap_or("").to_string(), l["message"].as_str().unwrap().to_string()))
        .collect()
}

fn state(run: &Value) -> (&str, &str) {
    (run["flow_run"]["state"].as_str().unwrap_or(""), run["flow_run"]["message"].as_str().unwrap_or(""))
}

fn deploy(sluice: &Sluice, address: &str, component: &Path, flow: &str, name: &str, extra: &[&str]) {
    let output = sluice
        .remote(address)
        .args(["deploy", component.to_str().unwrap(), "--flow", flow, "--name", name])
        .args(extra)
        .output()
        .unwrap();
    assert!(output.status.success(), "deploy {flow}/{name}: {}", texts(&output).1);
}

#[test]
fn python_examples_and_sdk_features_run_through_a_server() {
    let pipeline = python_component("examples/python-pipeline/flow.py");
    let retries = python_component("examples/python-retries/flow.py");
    let map = python_component("examples/python-map/flow.py");
    let features = python_component("tests/guests/python-features/flow.py");
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "8"]);
    let a = address.as_str();
    deploy(&sluice, a, &pipeline, "weather", "default", &[]);
    deploy(&sluice, a, &retries, "scores", "default", &[]);
    deploy(&sluice, a, &map, "sum_of_squares", "default", &[]);
    for flow in ["fails", "recovers", "fatal", "cached", "context"] {
        deploy(&sluice, a, &features, flow, "default", &[]);
    }
    let typed = json!({
        "count": 2, "ratio": 1, "name": "n", "loud": true, "tags": ["a"], "weights": {"w": 0.5},
        "nickname": null, "mode": "fast", "color": "green", "origin": {"x": 1}, "options": {"label": "l", "scale": 2}
    });
    deploy(&sluice, a, &features, "typed", "default", &["--params", &typed.to_string()]);
    // The host keeps a Python flow's parameters in its signature's order.
    let (_, detail) = get(a, "/api/v1/deployments/typed/default");
    let properties = detail["parameters_schema"]["properties"].as_object().unwrap();
    let order: Vec<&str> = properties.keys().map(String::as_str).collect();
    let signature = ["count", "ratio", "name", "loud", "tags", "weights", "nickname", "mode", "color", "origin"];
    assert_eq!(order, [&signature[..], &["options", "limit"]].concat(), "{detail:#}");

    // A wrong type is refused by the generated schema before any run exists.
    let mut wrong = typed.clone();
    wrong["count"] = json!("2");
    let (status, error) =
        post(a, "/api/v1/deployments/typed/default/runs", &json!({ "parameters": wrong }).to_string());
    assert_eq!(status, 422, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("count"), "{error}");
    let mut unknown_color = typed.clone();
    unknown_color["color"] = json!("purple");
    let (status, _) =
        post(a, "/api/v1/deployments/typed/default/runs", &json!({ "parameters": unknown_color }).to_string());
    assert_eq!(status, 422);
    let (_, runs) = get(a, "/api/v1/flow-runs?flow=typed");
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "{runs}");

    let ids: Vec<String> = [
        ("weather/default", json!({ "unit": "F" })),
        ("scores/default", json!({})),
        ("sum_of_squares/default", json!({})),
        ("typed/default", typed),
        ("fails/default", json!({})),
        ("recovers/default", json!({})),
        ("fatal/default", json!({})),
        ("cached/default", json!({})),
        ("context/default", json!({})),
    ]
    .into_iter()
    .map(|(deployment, parameters)| start(a, deployment, parameters))
    .collect();
    let runs: Vec<Value> = ids.iter().map(|id| ended(a, id)).collect();

    // Tasks, a map inside a subflow, and two subflows.
    assert_eq!(state(&runs[0]), ("Completed", ""), "{:#}", runs[0]);
    assert_eq!(runs[0]["flow_run"]["result"], "min 50.0°F, max 59.0°F, mean 54.5°F");
    let subflows: Vec<&str> = runs[0]["subflow_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["flow_run"]["flow"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(subflows, ["transform", "report"], "{:#}", runs[0]["subflow_runs"]);
    assert!(logs(a, &ids[0]).iter().any(|(_, m)| m == "Read 3 stations"));
    assert!(logs(a, &ids[0]).iter().any(|(_, m)| m == "min 50.0°F, max 59.0°F, mean 54.5°F"));

    // The flaky task succeeds on its third attempt, in a fresh instance each time.
    assert_eq!(runs[1]["flow_run"]["result"], json!({ "Ravens": 42, "Owls": 28 }));
    let fetch = task(&runs[1], "fetch_score-0");
    assert_eq!((fetch["state"].as_str(), fetch["attempts"].as_u64()), (Some("Completed"), Some(3)), "{fetch}");

    // map + submit, with futures passed as a task's input.
    assert_eq!(runs[2]["flow_run"]["result"], 30);
    assert_eq!(task(&runs[2], "square-3")["state"], "Completed");

    // Typed inputs arrive as their Python types, results come back as them too.
    assert_eq!(state(&runs[3]), ("Completed", ""), "{:#}", runs[3]);
    assert_eq!(
        runs[3]["flow_run"]["result"],
        json!({
            "arrived": { "count": "int", "ratio": "float", "color": "Color", "origin": "Point", "options": "dict",
                         "nickname": "NoneType", "limit": "int" },
            "moved": { "type": "Point", "x": 3 },
            "color": "green"
        })
    );

    // A raised exception fails the task with its message, after its retry; the traceback is in the log.
    assert_eq!(state(&runs[4]).0, "Failed");
    let explode = task(&runs[4], "explode-0");
    assert_eq!((explode["state"].as_str(), explode["attempts"].as_u64()), (Some("Failed"), Some(2)), "{explode}");
    assert!(explode["message"].as_str().unwrap().contains("ValueError: reading 42 is out of range"), "{explode}");
    let lines = logs(a, &ids[4]);
    let traceback = lines
        .iter()
        .find(|(_, m)| m.contains("Traceback (most recent call last)"))
        .unwrap_or_else(|| panic!("no traceback in {lines:#?}"));
    assert_eq!(traceback.0, "Error");
    assert!(
        traceback.1.contains("in _check_reading") && traceback.1.contains("ValueError: reading 42"),
        "{traceback:?}"
    );
    // A flow may catch a task's failure and carry on.
    assert_eq!(runs[5]["flow_run"]["result"], "caught failed");
    // A fatal error opts out of the task's three retries.
    let give_up = task(&runs[6], "give_up-0");
    assert_eq!((give_up["state"].as_str(), give_up["attempts"].as_u64()), (Some("Failed"), Some(1)), "{give_up}");
    assert!(give_up["message"].as_str().unwrap().contains("FatalError: the account is closed"), "{give_up}");

    // The second call with the same input is served from the cache.
    assert_eq!(runs[7]["flow_run"]["result"], json!([49, 49]));
    assert_eq!(task(&runs[7], "slow_square-0")["state"], "Completed");
    assert_eq!(task(&runs[7], "slow_square-1")["state"], "Cached");

    // The run context, the logger's levels and print.
    let run_name = runs[8]["flow_run"]["name"].as_str().unwrap();
    let result = &runs[8]["flow_run"]["result"];
    assert_eq!(result["flow_run"], run_name);
    assert_eq!(result["flow_name"], "context");
    assert_eq!(
        result["tasks"],
        json!([
            { "task_run": "whoami-0", "flow_run": run_name },
            { "task_run": "whoami-1", "flow_run": run_name }
        ])
    );
    let lines = logs(a, &ids[8]);
    for expected in [("Info", "info from the logger"), ("Warning", "warning from the logger"), ("Info", "printed line")]
    {
        assert!(lines.iter().any(|(l, m)| (l.as_str(), m.as_str()) == expected), "{expected:?} not in {lines:#?}");
    }

    // Caching holds across runs of the same artifact: every square of a second run is Cached.
    let again = ended(a, &start(a, "sum_of_squares/default", json!({})));
    assert_eq!(again["flow_run"]["result"], 30);
    for i in 0..4 {
        assert_eq!(task(&again, &format!("square-{i}"))["state"], "Cached", "{again:#}");
    }
}

#[test]
fn python_guests_that_loop_or_allocate_without_end_are_contained() {
    let hostile = python_component("tests/guests/python-hostile/flow.py");
    let good = python_component("examples/python-retries/flow.py");
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "4"]);
    let a = address.as_str();
    deploy(&sluice, a, &hostile, "spin", "loop", &[]);
    deploy(&sluice, a, &hostile, "hog", "mem", &["--memory", "96"]);
    deploy(&sluice, a, &good, "scores", "good", &[]);

    let spin = start(a, "spin/loop", json!({}));
    let hog = start(a, "hog/mem", json!({}));
    let beside = start(a, "scores/good", json!({ "teams": ["Kites"] }));

    // The looping task is stopped at its one-second timeout; the flow passes the failure on.
    let run = ended(a, &spin);
    let looped = task(&run, "loop_forever-0");
    assert_eq!(looped["state"], "TimedOut", "{run:#}");
    assert_eq!(state(&run).0, "Failed", "{run:#}");
    // Allocating without end ends at the memory limit, recorded, not Completed.
    let run = ended(a, &hog);
    let (hog_state, message) = state(&run);
    assert!(matches!(hog_state, "Failed" | "Crashed"), "{run:#}");
    assert!(message.contains("MemoryError") || message.contains("memory limit of 96 MiB"), "{message}");
    // A well-behaved Python flow beside them completes intact.
    let run = ended(a, &beside);
    assert_eq!(run["flow_run"]["result"], json!({ "Kites": 35 }), "{run:#}");
}

#[test]
fn a_flow_pauses_for_typed_input_is_resumed_with_it_and_emits_events() {
    paused::pause_resume_and_emit(&python_component("tests/guests/python-pause/flow.py"));
}
