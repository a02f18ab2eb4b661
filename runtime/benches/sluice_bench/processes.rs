//! `sluice` processes for the whole-process workloads: a command in a
//! given home, a server on a free port, a worker, their resident memory,
//! and the HTTP calls that create a run and wait for it.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `sluice` command with its own `SLUICE_HOME` and compile cache, and
/// nothing from the caller's environment that would send it elsewhere.
pub fn sluice(home: &Path) -> Command {
    let mut command = Command::new(crate::sluice_binary());
    command
        .env("SLUICE_HOME", home)
        .env("SLUICE_CACHE_DIR", home.join("cache"))
        .env_remove("SLUICE_API_URL")
        .env_remove("SLUICE_STORE_URL")
        .stdin(Stdio::null());
    command
}

/// Runs `command` to completion; fails with its stderr when it fails.
pub fn run(command: &mut Command) -> Result<std::process::Output> {
    let output = command.stdout(Stdio::piped()).stderr(Stdio::piped()).output()?;
    ensure!(output.status.success(), "{:?} failed: {}", command, String::from_utf8_lossy(&output.stderr));
    Ok(output)
}

/// A child process, killed and reaped on drop.
pub struct Process {
    child: Child,
}

impl Process {
    /// Resident memory in MB, from /proc/PID/status.
    pub fn rss_mb(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
        let kb: f64 = line.split_whitespace().nth(1).context("VmRSS value")?.parse()?;
        Ok(kb / 1024.0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `sluice server` on a free port in its own home, with deployments of
/// `bench_flow.wasm`. The process field drops (dies) before the home.
pub struct Server {
    pub process: Process,
    pub url: String,
    pub home: tempfile::TempDir,
    /// `SLUICE_DATABASE_URL` of the server and its commands, if set.
    database: Option<String>,
    /// The admin token the server made on its first start: every call sends it.
    token: String,
    client: reqwest::Client,
}

impl Server {
    /// Deploys each `(flow, name, parameters)` and starts `sluice server --port 0 EXTRA…`.
    pub fn start(extra: &[&str], deployments: &[(&str, &str, &str)]) -> Result<Self> {
        Self::start_on(None, extra, deployments)
    }

    /// As `start`, with its state in the database at `database` (a
    /// `postgres://` URL), or where the caller's environment says when `None`.
    pub fn start_on(database: Option<&str>, extra: &[&str], deployments: &[(&str, &str, &str)]) -> Result<Self> {
        let home = tempfile::tempdir()?;
        let database = database.map(str::to_string);
        let sluice = |home: &Path| {
            let mut command = sluice(home);
            if let Some(url) = &database {
                command.env(sluice::store::DATABASE_URL_VARIABLE, url);
            }
            command
        };
        let component = crate::component("bench_flow.wasm")?;
        for (flow, name, params) in deployments {
            run(sluice(home.path())
                .arg("deploy")
                .arg(&component)
                .args(["--flow", flow, "--name", name, "--params", params]))?;
        }
        let stderr = std::fs::File::create(home.path().join("server.stderr"))?;
        let mut child = sluice(home.path())
            .args(["server", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("starting sluice server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let process = Process { child };
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().context("the server printed nothing")??;
        let address = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .with_context(|| format!("no address in the server's first line {first:?}"))?;
        let url = format!("http://{address}");
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(home.path().join("admin-token")).context("the server's admin token")?;
        let token = token.trim().to_string();
        let headers = sluice::client::bearer_headers(Some(&token))?;
        let client = reqwest::Client::builder().no_proxy().default_headers(headers).build()?;
        Ok(Self { process, url, home, database, token, client })
    }

    /// A `sluice worker` against this server.
    pub fn worker(&self, extra: &[&str]) -> Result<Process> {
        let stderr = std::fs::File::create(self.home.path().join("worker.stderr"))?;
        let mut command = sluice(self.home.path());
        if let Some(url) = &self.database {
            command.env(sluice::store::DATABASE_URL_VARIABLE, url);
        }
        let child = command
            .args(["worker", "--api", &self.url, "--name", "bench-worker"])
            .env("SLUICE_API_TOKEN", &self.token)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting sluice worker")?;
        Ok(Process { child })
    }

    /// `GET /api/v1{path}`.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let response = self.client.get(format!("{}/api/v1{path}", self.url)).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }

    /// Creates a run of `flow/name`; returns its id.
    pub async fn create_run(&self, flow: &str, name: &str) -> Result<String> {
        let response = self.client.post(format!("{}/api/v1/deployments/{flow}/{name}/runs", self.url)).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.as_u16() == 201, "POST run of {flow}/{name}: {status} {body}");
        Ok(body["id"].as_str().context("no run id")?.to_string())
    }

    /// Polls the run every millisecond until it is `Completed`; returns the last inspection.
    pub async fn wait_completed(&self, id: &str) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let run = self.get(&format!("/flow-runs/{id}")).await?;
            match run["flow_run"]["state"].as_str() {
                Some("Completed") => return Ok(run),
                Some(state @ ("Failed" | "TimedOut" | "Crashed" | "Cancelled")) => bail!("run {id} ended {state}"),
                _ => {}
            }
            ensure!(Instant::now() < deadline, "run {id} not Completed after 120 s: {run}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
