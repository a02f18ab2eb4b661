//! Events, webhooks and automations through a real `sluice server` (SQLite,
//! embedded worker) on 127.0.0.1, with the `bench_flow.wasm` guest's
//! `sequential` flow at `count=0`:
//!
//! 1. **Webhook to `Running`**: an unsigned hook's delivery, one at a time;
//!    from just before the POST is sent (client clock) to the run's recorded
//!    `started` (server clock, same machine). Median / p90 / max in ms.
//! 2. **Event to the automation's run created**: an automation on
//!    `sluice.flow-run.Completed` of deployment `a` runs deployment `b`;
//!    from the `Completed` event's time to `b`'s run's `created`, both as
//!    the server recorded them. Median / p90 / max in ms.
//! 3. **Events/s sustained**: 8 concurrent clients deliver to a hook of a
//!    server without workers (each delivery records a run, its `Scheduled`
//!    state event and the delivery's event); events recorded / elapsed.
//!
//! `make guests && cargo bench -p sluice --bench events [-- --quick]`
//! (`--quick`: a few of each, a smoke test). The client, the server and its
//! worker share this machine's CPUs.

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server in its own home, with the deployments `a` and `b`.
struct Server {
    address: String,
    token: String,
    client: reqwest::Client,
    _process: Process,
    _home: tempfile::TempDir,
}

fn component_path() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo.join("target"));
    let path = target.join("wasm32-wasip2/guest/bench_flow.wasm");
    assert!(path.exists(), "build the guests first: make guests ({} is missing)", path.display());
    path
}

fn sluice(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .env("SLUICE_HOME", home)
        .env_remove("SLUICE_API_URL")
        .env_remove("SLUICE_STORE_URL")
        .env_remove(sluice::store::DATABASE_URL_VARIABLE);
    command
}

impl Server {
    fn start(workers: usize) -> Result<Self> {
        let home = tempfile::tempdir()?;
        for name in ["a", "b"] {
            let output = sluice(home.path())
                .arg("deploy")
                .arg(component_path())
                .args(["--flow", "sequential", "--name", name, "--param", "count=0"])
                .output()?;
            ensure!(output.status.success(), "deploy: {}", String::from_utf8_lossy(&output.stderr));
        }
        let mut child = sluice(home.path())
            .args(["server", "--port", "0", "--workers", &workers.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(home.path().join("server.stderr"))?))
            .spawn()?;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let process = Process(child);
        let first = lines.next().context("the server printed nothing")??;
        let address = first.split("http://").nth(1).and_then(|r| r.split(' ').next()).context("address")?.to_string();
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(home.path().join("admin-token"))?.trim().to_string();
        let client = reqwest::Client::builder().no_proxy().build()?;
        Ok(Self { address, token, client, _process: process, _home: home })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut request =
            self.client.request(method, format!("http://{}{path}", self.address)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "{path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn hook(&self) -> Result<String> {
        let made = self
            .call(
                reqwest::Method::POST,
                "/api/v1/webhooks",
                Some(json!({"deployment": "sequential/a", "unsigned": true})),
            )
            .await?;
        Ok(made["path"].as_str().context("path")?.to_string())
    }

    async fn deliver(&self, path: &str) -> Result<String> {
        let response = self.client.post(format!("http://{}{path}", self.address)).body("{}").send().await?;
        let body: Value = response.json().await?;
        Ok(body["run"].as_str().with_context(|| format!("no run: {body}"))?.to_string())
    }

    async fn run(&self, id: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, &format!("/api/v1/flow-runs/{id}"), None).await
    }

    async fn wait_for(&self, id: &str, field: &str) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.run(id).await?;
            if !run["flow_run"][field].is_null() {
                return Ok(run);
            }
            ensure!(Instant::now() < deadline, "run {id} has no {field} after 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn time(value: &Value) -> Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(value.as_str().context("a time")?)?.with_timezone(&Utc))
}

fn summary(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!("{label}: median {:.2} ms, p90 {:.2} ms, max {:.2} ms ({} samples)", at(0.5), at(0.9), at(1.0), ms.len());
}

async fn webhook_to_running(samples: usize) -> Result<()> {
    let server = Server::start(4)?;
    let path = server.hook().await?;
    let warm = server.deliver(&path).await?;
    server.wait_for(&warm, "ended").await?;
    let mut latencies = Vec::new();
    for _ in 0..samples {
        let sent = Utc::now();
        let id = server.deliver(&path).await?;
        let run = server.wait_for(&id, "ended").await?;
        latencies.push((time(&run["flow_run"]["started"])? - sent).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    summary("webhook POST -> run Running", latencies);
    Ok(())
}

async fn event_to_automation_run(samples: usize) -> Result<()> {
    let server = Server::start(4)?;
    let automation = json!({"name": "follow", "trigger": {"event": "sluice.flow-run.Completed", "deployment": "sequential/a"},
        "action": {"kind": "run-deployment", "deployment": "sequential/b"}});
    server.call(reqwest::Method::POST, "/api/v1/automations", Some(automation)).await?;
    let mut latencies = Vec::new();
    for _ in 0..=samples {
        let a = server.call(reqwest::Method::POST, "/api/v1/deployments/sequential/a/runs", None).await?;
        let a = a["id"].as_str().context("id")?.to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        let fired = loop {
            let fired = server
                .call(reqwest::Method::GET, &format!("/api/v1/events?name=sluice.automation.fired&flow_run={a}"), None)
                .await?;
            if let Some(event) = fired.as_array().and_then(|e| e.first()) {
                break event.clone();
            }
            ensure!(Instant::now() < deadline, "no firing for run {a}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let completed = server
            .call(reqwest::Method::GET, &format!("/api/v1/events?name=sluice.flow-run.Completed&flow_run={a}"), None)
            .await?;
        let b = server.run(fired["payload"]["run"].as_str().context("run")?).await?;
        let latency = time(&b["flow_run"]["created"])? - time(&completed[0]["time"])?;
        latencies.push(latency.num_microseconds().unwrap_or(0) as f64 / 1000.0);
        server.wait_for(b["flow_run"]["id"].as_str().unwrap_or_default(), "ended").await?;
    }
    latencies.remove(0); // the first loads the program
    summary("event (Completed) -> automation's run created", latencies);
    Ok(())
}

async fn events_per_second(deliveries: usize) -> Result<()> {
    let server = std::sync::Arc::new(Server::start(0)?);
    let path = std::sync::Arc::new(server.hook().await?);
    let start = Instant::now();
    let mut clients = Vec::new();
    for client in 0..8 {
        let (server, path) = (server.clone(), path.clone());
        let share = deliveries / 8 + usize::from(client < deliveries % 8);
        clients.push(tokio::spawn(async move {
            for _ in 0..share {
                server.deliver(&path).await?;
            }
            anyhow::Ok(())
        }));
    }
    for client in clients {
        client.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // A delivery records its event and its run's Scheduled event.
    let events = deliveries * 2;
    println!(
        "events recorded through webhooks, 8 clients: {:.0} events/s ({events} events in {elapsed:.2} s)",
        events as f64 / elapsed
    );
    Ok(())
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (latency, throughput) = if quick { (5, 200) } else { (200, 5000) };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "events bench: bench_flow.wasm `sequential` count=0, SQLite, {cpus} CPUs shared{}",
        if quick { " (--quick)" } else { "" }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        webhook_to_running(latency).await?;
        event_to_automation_run(latency / 2).await?;
        events_per_second(throughput).await
    })
}
