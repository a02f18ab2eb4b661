//! Shared by the end-to-end tests: builds the guest crates for wasm32-wasip2
//! once, and runs the real `sluice` binary in a fresh `SLUICE_HOME`.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository's root folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("runtime/ is inside the repo").to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"))
}

/// The guest crates the tests run.
const GUESTS: &[&str] = &["hello-flow", "pipeline-flow", "etl-flow", "hostile-flow", "bench-flow"];

/// The path of a guest component, e.g. `guest("hello_flow")`, built on first use.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        // `make test` builds them first; cargo makes this a quick no-op then.
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.current_dir(repo()).args(["build", "--quiet", "--profile", "guest", "--target", "wasm32-wasip2"]);
        for guest in GUESTS {
            cargo.args(["-p", guest]);
        }
        let status = cargo.status().expect("running cargo to build the guests");
        assert!(status.success(), "building the guest crates failed");
    });
    let path = target_dir().join("wasm32-wasip2").join("guest").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A `sluice` command with its own empty home; the compile cache is shared
/// between tests (it is keyed by digest, so sharing is safe) unless a test
/// sets its own.
pub struct Sluice {
    pub home: tempfile::TempDir,
}

impl Sluice {
    pub fn new() -> Self {
        Self { home: tempfile::tempdir().expect("a temp dir") }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .env("SLUICE_HOME", self.home.path())
            .env("SLUICE_CACHE_DIR", target_dir().join("test-compile-cache"))
            .env_remove("SLUICE_API_URL");
        command
    }

    /// Runs `sluice` with `args` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("running sluice")
    }

    /// Runs `sluice exec --output json` and parses the report.
    pub fn exec_json(&self, component: &Path, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["exec", component.to_str().expect("a UTF-8 path"), "--output", "json"];
        all.extend_from_slice(args);
        let output = self.run(&all);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("stdout is not a JSON report ({e}):\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr))
        });
        (output.status.code().expect("exited"), report)
    }
}

/// Text of stdout and stderr.
pub fn texts(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The task runs of a report with the given display name.
pub fn task_run<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["task_runs"]
        .as_array()
        .expect("task_runs")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task run named {name} in {report:#}"))
}

/// The state names of a run's history, in order.
pub fn states(run: &Value) -> Vec<String> {
    run["states"].as_array().expect("states").iter().map(|s| s["state"].as_str().expect("a name").to_string()).collect()
}

/// The log messages of a report written by the run with this display name.
pub fn logs_of(report: &Value, run_name: &str) -> Vec<String> {
    report["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter(|l| l["run_name"] == run_name)
        .map(|l| l["message"].as_str().expect("a message").to_string())
        .collect()
}

/// The Python example, built by its own script (componentize-py in a venv).
pub fn python_greet() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = target_dir().join("wasm32-wasip2").join("guest").join("python_greet.wasm");
            if std::env::var_os("SLUICE_EXAMPLES_BUILT").is_none() || !out.exists() {
                let status = Command::new(repo().join("examples/python-greet/build.sh"))
                    .arg(&out)
                    .status()
                    .expect("running examples/python-greet/build.sh");
                assert!(status.success(), "building the Python example failed");
            }
            out
        })
        .clone()
}
