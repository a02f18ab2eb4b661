//! What tenancy costs a request and a run, on a real `sluice server` on
//! 127.0.0.1 with the `bench_flow.wasm` guest:
//!
//! 1. **Per request**: `GET /api/v1/health` (no token, no tenant) against
//!    `GET /api/v1/whoami` (token parsed, looked up, hashed and compared,
//!    role checked), interleaved pair by pair on one keep-alive connection.
//!    The difference of the medians is what authentication adds to a call.
//! 2. **Per run**: the trivial deployment run of the server benchmark
//!    (`sequential`, `count=0`, created through the API by a tenant's
//!    deployer token and polled every 1 ms until `Completed`): its median
//!    latency and the number of authenticated calls it took, so the share of
//!    authentication in it is `calls × per-request cost / latency`.
//!
//! `make guests && cargo bench -p sluice --bench auth_overhead [-- --quick]`

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn guest() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo.join("target"));
    target.join("wasm32-wasip2/guest/bench_flow.wasm")
}

fn median(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    (at(0.5), at(0.9))
}

async fn call(client: &reqwest::Client, request: reqwest::RequestBuilder) -> Result<(f64, Value)> {
    let start = Instant::now();
    let response = client.execute(request.build()?).await?;
    let status = response.status();
    let body: Value = response.json().await?;
    let micros = start.elapsed().as_secs_f64() * 1e6;
    ensure!(status.is_success(), "{status}: {body}");
    Ok((micros, body))
}

async fn bench(quick: bool) -> Result<()> {
    let component = guest();
    ensure!(component.exists(), "{} is missing: run `make guests` first", component.display());
    let home = tempfile::tempdir()?;
    let mut server = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .env("SLUICE_HOME", home.path())
        .env_remove("SLUICE_API_URL")
        .args(["server", "--port", "0", "--workers", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = server.stdout.take().unwrap();
    let _server = Killed(server);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().context("the server printed nothing")??;
    std::thread::spawn(move || for _ in lines {});
    let address = first.split("http://").nth(1).and_then(|r| r.split(' ').next()).context("no address")?.to_string();
    let base = format!("http://{address}/api/v1");
    let operator = std::fs::read_to_string(home.path().join("admin-token"))?.trim().to_string();
    let client = reqwest::Client::new();

    // A tenant of its own, as strangers would use the server.
    call(&client, client.post(format!("{base}/tenants")).bearer_auth(&operator).json(&json!({ "name": "acme" })))
        .await?;
    let (_, made) = call(
        &client,
        client
            .post(format!("{base}/tokens"))
            .bearer_auth(&operator)
            .json(&json!({ "tenant": "acme", "role": "deployer" })),
    )
    .await?;
    let token = made["token"].as_str().context("no token")?.to_string();
    let bytes = std::fs::read(&component)?;
    let (_, pushed) = call(&client, client.post(format!("{base}/artifacts")).bearer_auth(&token).body(bytes)).await?;
    let digest = pushed["artifact"]["digest"].clone();
    let deployment = json!({ "artifact": digest, "flow": "sequential", "name": "zero", "parameters": { "count": 0 } });
    call(&client, client.post(format!("{base}/deployments")).bearer_auth(&token).json(&deployment)).await?;

    let pairs = if quick { 50 } else { 4000 };
    let (mut open, mut authed) = (Vec::new(), Vec::new());
    for _ in 0..pairs {
        open.push(call(&client, client.get(format!("{base}/health"))).await?.0);
        authed.push(call(&client, client.get(format!("{base}/whoami")).bearer_auth(&token)).await?.0);
    }
    let (open_median, open_p90) = median(open);
    let (authed_median, authed_p90) = median(authed);
    let per_request = authed_median - open_median;

    let runs = if quick { 5 } else { 300 };
    let (mut latencies, mut calls) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        let create = client.post(format!("{base}/deployments/sequential/zero/runs")).bearer_auth(&token);
        let (_, run) = call(&client, create).await?;
        let id = run["id"].as_str().context("no run id")?.to_string();
        let mut made_calls = 1;
        loop {
            made_calls += 1;
            let (_, now) = call(&client, client.get(format!("{base}/flow-runs/{id}")).bearer_auth(&token)).await?;
            match now["flow_run"]["state"].as_str() {
                Some("Completed") => break,
                Some("Failed" | "Crashed" | "TimedOut" | "Cancelled") => anyhow::bail!("run ended {now}"),
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        latencies.push(start.elapsed().as_secs_f64() * 1e6);
        calls.push(made_calls as f64);
    }
    let (run_median, run_p90) = median(latencies);
    let (calls_median, _) = median(calls);
    let share = 100.0 * per_request * calls_median / run_median;

    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("auth overhead, {pairs} interleaved request pairs, {runs} trivial runs, {cores} cores");
    println!("GET /health (no token)          median {open_median:8.1} µs   p90 {open_p90:8.1} µs");
    println!("GET /whoami (token checked)     median {authed_median:8.1} µs   p90 {authed_p90:8.1} µs");
    println!("authentication per request      {per_request:8.1} µs");
    println!(
        "trivial run, created to Completed (client): median {:.2} ms, p90 {:.2} ms",
        run_median / 1e3,
        run_p90 / 1e3
    );
    println!("authenticated calls per run (median): {calls_median:.0}");
    println!("authentication's share of a trivial run: {share:.2}% (target ≤ 5%)");
    Ok(())
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(quick))
}
