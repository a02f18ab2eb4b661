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

/// The cargo target folder.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"))
}

/// The guest crates the tests run.
const GUESTS: &[&str] = &[
    "hello-flow",
    "pipeline-flow",
    "etl-flow",
    "hostile-flow",
    "hostile-io-flow",
    "hostile-raw-flow",
    "bench-flow",
    "ui-fixtures-flow",
    "pause-flow",
];

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
            .env_remove("SLUICE_API_URL")
            .env_remove("SLUICE_API_TOKEN");
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

/// A minimal HTTP/1.1 client for the tests: one request per connection.
pub mod http {
    use serde_json::Value;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use std::collections::HashMap;
    use std::sync::Mutex;

    /// The token each server address is called with by default (its admin token).
    static TOKENS: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

    /// Calls to `address` send `token` from now on.
    pub fn use_token(address: &str, token: &str) {
        TOKENS.lock().unwrap().get_or_insert_with(HashMap::new).insert(address.to_string(), token.to_string());
    }

    /// The token calls to `address` send by default.
    pub fn token_for(address: &str) -> Option<String> {
        TOKENS.lock().unwrap().as_ref().and_then(|tokens| tokens.get(address).cloned())
    }

    /// Sends a request with the address's default token and returns the
    /// status and the body parsed as JSON (`Null` for an empty body).
    pub fn request(address: &str, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Value) {
        request_as(address, token_for(address).as_deref(), method, path, body)
    }

    /// [`request`] with `token` (none at all when `None`).
    pub fn request_as(
        address: &str,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> (u16, Value) {
        let mut stream = TcpStream::connect(address).expect("connecting to the server");
        let body = body.unwrap_or(b"");
        let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        let body = if chunked { dechunk(body) } else { body.to_string() };
        let json = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or(Value::String(body))
        };
        (status, json)
    }

    /// A chunked HTTP/1.1 body put back together.
    pub fn dechunk(mut body: &str) -> String {
        let mut out = String::new();
        while let Some((size, rest)) = body.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.push_str(&rest[..size]);
            body = &rest[size + 2..];
        }
        out
    }

    pub fn get(address: &str, path: &str) -> (u16, Value) {
        request(address, "GET", path, None)
    }

    pub fn post(address: &str, path: &str, body: &str) -> (u16, Value) {
        request(address, "POST", path, Some(body.as_bytes()))
    }
}

/// A `sluice server` or `sluice worker` process, stopped (SIGKILL) on drop.
pub struct Process {
    pub child: std::process::Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sluice {
    /// Starts `sluice server --port 0 …` and returns it with its address.
    pub fn server(&self, extra: &[&str]) -> (Process, String) {
        self.server_with_env(extra, &[])
    }

    /// [`Sluice::server`] with these environment variables set.
    pub fn server_with_env(&self, extra: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> (Process, String) {
        use std::io::BufRead;
        let mut child = self
            .command()
            .envs(env.iter().copied())
            .args(["server", "--port", "0"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("starting sluice server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().expect("the server prints its address").unwrap();
        let address =
            first.split("http://").nth(1).and_then(|rest| rest.split(' ').next()).expect("an address").to_string();
        std::thread::spawn(move || for _ in lines {});
        http::use_token(&address, &self.admin_token());
        (Process { child }, address)
    }

    /// The admin token a server made in this home on its first start.
    pub fn admin_token(&self) -> String {
        let path = self.home.path().join("admin-token");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())).trim().to_string()
    }

    /// A `sluice` command talking to the server at `address` with its default token.
    pub fn remote(&self, address: &str) -> Command {
        let mut command = self.command();
        command.env("SLUICE_API_URL", format!("http://{address}"));
        if let Some(token) = http::token_for(address) {
            command.env("SLUICE_API_TOKEN", token);
        }
        command
    }

    /// Starts `sluice worker` against `address`.
    pub fn worker(&self, address: &str, name: &str, extra: &[&str]) -> Process {
        let child = self
            .remote(address)
            .args(["worker", "--api", &format!("http://{address}"), "--name", name])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("starting sluice worker");
        Process { child }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `seconds`.
pub fn eventually<T>(seconds: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {seconds} s waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
