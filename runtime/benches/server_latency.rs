//! End-to-end cost of `sluice server` as real processes on 127.0.0.1, driven
//! through the HTTP API with the `bench_flow.wasm` guest (`bench/guest`):
//!
//! 1. **Deployment run latency**: a run of the `sequential` flow with
//!    `count=0` (no task) created with `POST /api/v1/deployments/{flow}/{name}/runs`,
//!    one at a time, on a server with the default embedded worker (4 slots).
//!    Two views: (a) client-observed, from sending the POST until a
//!    `GET /api/v1/flow-runs/{id}` (polled every 1 ms) reads `Completed`;
//!    (b) server-recorded, the run's `ended - created`. Median / p90 / p99 in
//!    ms, plus the medians of the recorded state steps (created -> Pending
//!    -> Running -> Completed) to show where the time goes. The same for
//!    `count=1` (one task). A warm-up run precedes every measurement, and
//!    the compile cache (`SLUICE_CACHE_DIR`) is shared by the whole bench
//!    (the first `sluice deploy` fills it); a fresh server's first run is
//!    reported separately.
//! 2. **Throughput**: N trivial runs created as fast as possible by 8
//!    concurrent client tasks on a server with `--workers 2`, then with
//!    `--workers 8`; runs/s = completed runs / (first POST -> last completion
//!    seen). Completion is detected after the last POST by polling
//!    `GET /api/v1/flow-runs?state=X&limit=1` for the non-terminal states in
//!    lifecycle order every 5 ms (a few cheap indexed queries, no polling
//!    while the runs are being created). The server-recorded span (first
//!    POST -> latest `ended`) is printed as a cross-check.
//! 3. **Memory**: VmRSS (/proc/PID/status) of an idle `sluice server` after
//!    startup + one warm-up run (and after the latency and throughput runs),
//!    of a `--workers 0` server, and of an idle
//!    `sluice worker --api http://ADDR --name w` (and after it ran one run).
//!
//! Every server gets its own temporary `SLUICE_HOME`; children are killed on
//! exit. The client and the server share this machine's CPUs.
//!
//! `make guests && cargo bench -p sluice --bench server_latency [-- --quick]`
//! (`--quick`: 10 latency runs, 100 throughput runs; a smoke test).

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FLOW: &str = "sequential";
const CLIENTS: usize = 8;
const LATENCY_POLL: Duration = Duration::from_millis(1);
const THROUGHPUT_POLL: Duration = Duration::from_millis(5);
/// Non-terminal states, in the order a run goes through them.
const NOT_DONE: [&str; 7] = ["Scheduled", "Late", "Pending", "Running", "AwaitingRetry", "Retrying", "Cancelling"];
const NOT_SUCCESS: [&str; 4] = ["Failed", "TimedOut", "Crashed", "Cancelled"];

struct Options {
    quick: bool,
    latency_runs: usize,
    throughput_runs: usize,
}

fn options() -> Options {
    let quick = std::env::args().any(|a| a == "--quick");
    if quick {
        Options { quick, latency_runs: 10, throughput_runs: 100 }
    } else {
        Options { quick, latency_runs: 200, throughput_runs: 2000 }
    }
}

fn component_path() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo.join("target"));
    let path = target.join("wasm32-wasip2/guest/bench_flow.wasm");
    assert!(path.exists(), "build the guests first: make guests ({} is missing)", path.display());
    path
}

/// A child process, killed (SIGKILL) and reaped on drop.
struct Process {
    child: Child,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in MB, from /proc/PID/status.
    fn rss_mb(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
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

/// A `sluice server` in a fresh `SLUICE_HOME`. Fields drop in order: the
/// process dies before its home is removed.
struct Server {
    process: Process,
    address: String,
    /// The admin token the server made on its first start.
    token: String,
    home: tempfile::TempDir,
}

struct Bench {
    binary: PathBuf,
    component: PathBuf,
    cache: tempfile::TempDir,
    client: reqwest::Client,
}

impl Bench {
    fn command(&self, home: &Path) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .env("SLUICE_HOME", home)
            .env("SLUICE_CACHE_DIR", self.cache.path())
            .env_remove("SLUICE_API_URL")
            .env_remove("SLUICE_STORE_URL");
        command
    }

    fn stderr_log(home: &Path, name: &str) -> Result<Stdio> {
        Ok(Stdio::from(std::fs::File::create(home.join(format!("{name}.stderr")))?))
    }

    /// Deploys `bench_flow.wasm`'s `sequential` as `name` with `count`.
    fn deploy(&self, home: &Path, name: &str, count: u32) -> Result<()> {
        let output = self
            .command(home)
            .arg("deploy")
            .arg(&self.component)
            .args(["--flow", FLOW, "--name", name, "--param", &format!("count={count}")])
            .output()?;
        ensure!(output.status.success(), "sluice deploy failed: {}", String::from_utf8_lossy(&output.stderr));
        Ok(())
    }

    /// Starts `sluice server --port 0 …` in a fresh home with `deployments`.
    fn server(&self, extra: &[&str], deployments: &[(&str, u32)]) -> Result<Server> {
        let home = tempfile::tempdir()?;
        for (name, count) in deployments {
            self.deploy(home.path(), name, *count)?;
        }
        let mut child = self
            .command(home.path())
            .args(["server", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Self::stderr_log(home.path(), "server")?)
            .spawn()
            .context("starting sluice server")?;
        let stdout = child.stdout.take().unwrap();
        let process = Process { child };
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().context("the server printed nothing")??;
        let address = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .with_context(|| format!("no address in {first:?}"))?
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        let token = std::fs::read_to_string(home.path().join("admin-token")).context("reading the admin token")?;
        Ok(Server { process, address, token: token.trim().to_string(), home })
    }

    fn worker(&self, server: &Server, name: &str) -> Result<Process> {
        let child = self
            .command(server.home.path())
            .args(["worker", "--api", &format!("http://{}", server.address), "--name", name])
            .env("SLUICE_API_TOKEN", &server.token)
            .stdout(Stdio::null())
            .stderr(Self::stderr_log(server.home.path(), "worker")?)
            .spawn()
            .context("starting sluice worker")?;
        Ok(Process { child })
    }

    async fn get(&self, server: &Server, path: &str) -> Result<Value> {
        let url = format!("http://{}/api/v1{path}", server.address);
        let response = self.client.get(url).bearer_auth(&server.token).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }

    /// Creates a run of deployment `name`; returns its id.
    async fn create_run(&self, server: &Server, name: &str) -> Result<String> {
        let url = format!("http://{}/api/v1/deployments/{FLOW}/{name}/runs", server.address);
        let response = self.client.post(url).bearer_auth(&server.token).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.as_u16() == 201, "POST run: {status} {body}");
        Ok(body["id"].as_str().context("no run id")?.to_string())
    }

    /// Polls the run every `LATENCY_POLL` until it is Completed; returns the
    /// last inspection (`{"flow_run", "states", …}`).
    async fn wait_completed(&self, server: &Server, id: &str) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.get(server, &format!("/flow-runs/{id}")).await?;
            match run["flow_run"]["state"].as_str() {
                Some("Completed") => return Ok(run),
                Some(state) if NOT_SUCCESS.contains(&state) => bail!("run {id} ended {state}: {run}"),
                _ => {}
            }
            ensure!(Instant::now() < deadline, "run {id} not Completed after 60 s: {run}");
            tokio::time::sleep(LATENCY_POLL).await;
        }
    }

    /// One run, start to end; returns the client-observed time.
    async fn one_run(&self, server: &Server, name: &str) -> Result<(Duration, Value)> {
        let start = Instant::now();
        let id = self.create_run(server, name).await?;
        let run = self.wait_completed(server, &id).await?;
        Ok((start.elapsed(), run))
    }
}

fn time_of(value: &Value) -> Result<DateTime<Utc>> {
    let text = value.as_str().with_context(|| format!("not a time: {value}"))?;
    Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))
}

fn ms(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// Time of the first state `state` in an inspection's history.
fn state_time(run: &Value, state: &str) -> Result<DateTime<Utc>> {
    let states = run["states"].as_array().context("no states")?;
    let entry = states.iter().find(|s| s["state"] == state).with_context(|| format!("no {state} state in {run}"))?;
    time_of(&entry["time"])
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn stats(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (percentile(&values, 0.5), percentile(&values, 0.9), percentile(&values, 0.99))
}

struct Latency {
    client: Vec<f64>,
    server: Vec<f64>,
    post: Vec<f64>,
    to_pending: Vec<f64>,
    to_running: Vec<f64>,
    to_completed: Vec<f64>,
}

async fn latency(bench: &Bench, server: &Server, name: &str, runs: usize) -> Result<Latency> {
    let mut l = Latency {
        client: vec![],
        server: vec![],
        post: vec![],
        to_pending: vec![],
        to_running: vec![],
        to_completed: vec![],
    };
    for _ in 0..runs {
        let start = Instant::now();
        let id = bench.create_run(server, name).await?;
        l.post.push(start.elapsed().as_secs_f64() * 1e3);
        let run = bench.wait_completed(server, &id).await?;
        l.client.push(start.elapsed().as_secs_f64() * 1e3);
        let created = time_of(&run["flow_run"]["created"])?;
        let ended = time_of(&run["flow_run"]["ended"])?;
        let (pending, running) = (state_time(&run, "Pending")?, state_time(&run, "Running")?);
        l.server.push(ms(ended - created));
        l.to_pending.push(ms(pending - created));
        l.to_running.push(ms(running - pending));
        l.to_completed.push(ms(ended - running));
    }
    Ok(l)
}

struct Throughput {
    runs: usize,
    posted_s: f64,
    wall_s: f64,
    server_span_s: f64,
}

async fn throughput(bench: &Bench, server: &Server, runs: usize) -> Result<Throughput> {
    let start = Instant::now();
    let start_wall = Utc::now();
    let per_client = runs.div_ceil(CLIENTS);
    let mut posts = Vec::new();
    for c in 0..CLIENTS {
        let n = per_client.min(runs.saturating_sub(c * per_client));
        posts.push(async move {
            for _ in 0..n {
                bench.create_run(server, "trivial").await?;
            }
            anyhow::Ok(())
        });
    }
    for result in futures_join_all(posts).await {
        result?;
    }
    let posted_s = start.elapsed().as_secs_f64();
    // Lifecycle order: a run only moves forward, so once every earlier state
    // read empty, a later one reading empty means none is left behind.
    let deadline = Instant::now() + Duration::from_secs(600);
    'poll: loop {
        for state in NOT_DONE {
            let found = bench.get(server, &format!("/flow-runs?state={state}&limit=1")).await?;
            if !found.as_array().context("a list")?.is_empty() {
                ensure!(Instant::now() < deadline, "runs still {state} after 600 s");
                tokio::time::sleep(THROUGHPUT_POLL).await;
                continue 'poll;
            }
        }
        break;
    }
    let wall_s = start.elapsed().as_secs_f64();
    for state in NOT_SUCCESS {
        let found = bench.get(server, &format!("/flow-runs?state={state}&limit=1000")).await?;
        ensure!(found.as_array().context("a list")?.is_empty(), "some runs ended {state}: {found}");
    }
    // The newest 1000 runs by creation hold the last to end (runs are taken FIFO).
    let completed = bench.get(server, "/flow-runs?state=Completed&limit=1000").await?;
    let completed = completed.as_array().context("a list")?;
    // `runs` plus the warm-up run.
    ensure!(completed.len() == (runs + 1).min(1000), "{} runs Completed of {}", completed.len(), runs + 1);
    let last_end = completed.iter().map(|r| time_of(&r["ended"])).collect::<Result<Vec<_>>>()?.into_iter().max();
    let server_span_s = last_end.map_or(f64::NAN, |end| ms(end - start_wall) / 1e3);
    Ok(Throughput { runs, posted_s, wall_s, server_span_s })
}

/// Awaits futures concurrently on this task (they borrow the bench, so they
/// are polled here rather than spawned; no extra dependency).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn main_async(options: Options) -> Result<()> {
    let bench = Bench {
        binary: PathBuf::from(env!("CARGO_BIN_EXE_sluice")),
        component: component_path(),
        cache: tempfile::tempdir()?,
        client: reqwest::Client::builder().no_proxy().build()?,
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "sluice server bench: bench_flow.wasm `{FLOW}`, {cpus} CPUs shared by client and server{}",
        if options.quick { " (--quick)" } else { "" }
    );

    // 1. Latency, default embedded worker (4 slots).
    let server = bench.server(&[], &[("trivial", 0), ("one-task", 1)])?;
    let (cold, _) = bench.one_run(&server, "trivial").await?;
    settle().await;
    let rss_server_idle = server.process.rss_mb()?;
    bench.one_run(&server, "one-task").await?;
    let trivial = latency(&bench, &server, "trivial", options.latency_runs).await?;
    let one_task = latency(&bench, &server, "one-task", options.latency_runs).await?;
    settle().await;
    let rss_server_after_latency = server.process.rss_mb()?;
    drop(server);

    // 2. Throughput.
    let mut throughputs = Vec::new();
    let mut rss_after_throughput = Vec::new();
    for workers in ["2", "8"] {
        let server = bench.server(&["--workers", workers], &[("trivial", 0)])?;
        bench.one_run(&server, "trivial").await?;
        let t = throughput(&bench, &server, options.throughput_runs).await?;
        settle().await;
        rss_after_throughput.push((workers, server.process.rss_mb()?));
        throughputs.push((workers, t));
    }

    // 3. A separate worker process against a server without an embedded one.
    let server = bench.server(&["--workers", "0"], &[("trivial", 0)])?;
    let worker = bench.worker(&server, "w")?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss_server_no_worker = server.process.rss_mb()?;
    let rss_worker_idle = worker.rss_mb()?;
    let (remote, _) = bench.one_run(&server, "trivial").await?;
    settle().await;
    let rss_worker_after = worker.rss_mb()?;
    drop(worker);
    drop(server);

    // The table.
    let n = options.latency_runs;
    println!("\nlatency, one run at a time (ms)              runs   median      p90      p99");
    for (label, l) in [("count=0", &trivial), ("count=1", &one_task)] {
        for (view, values) in [("client POST -> GET sees Completed", &l.client), ("server ended - created", &l.server)]
        {
            let (p50, p90, p99) = stats(values.clone());
            println!("  {label} {view:<34} {n:>4} {p50:>8.2} {p90:>8.2} {p99:>8.2}");
        }
    }
    for (label, l) in [("count=0", &trivial), ("count=1", &one_task)] {
        let med = |v: &Vec<f64>| stats(v.clone()).0;
        println!(
            "  {label} medians: POST rtt {:.2} | created->Pending {:.2} | Pending->Running {:.2} | Running->Completed {:.2}",
            med(&l.post),
            med(&l.to_pending),
            med(&l.to_running),
            med(&l.to_completed)
        );
    }
    println!(
        "  first run of a fresh server process: {:.1} ms (code already compiled by `sluice deploy`)",
        cold.as_secs_f64() * 1e3
    );
    println!("  one run on a separate `sluice worker`: {:.1} ms (client-observed)", remote.as_secs_f64() * 1e3);
    println!("\nthroughput, {CLIENTS} client tasks   runs   POSTs done s   all Completed s   runs/s   (server span s)");
    for (workers, t) in &throughputs {
        println!(
            "  --workers {workers:<19} {:>5} {:>14.2} {:>17.2} {:>8.0}   ({:.2})",
            t.runs,
            t.posted_s,
            t.wall_s,
            t.runs as f64 / t.wall_s,
            t.server_span_s
        );
    }
    println!("\nmemory (VmRSS, MB)");
    println!("  sluice server, idle after startup + 1 run   {rss_server_idle:>7.1}");
    println!("  sluice server, after {:>4} latency runs      {rss_server_after_latency:>7.1}", 2 * n + 2);
    for (workers, rss) in &rss_after_throughput {
        println!("  sluice server --workers {workers}, after {:>5} runs {rss:>6.1}", options.throughput_runs + 1);
    }
    println!("  sluice server --workers 0, idle              {rss_server_no_worker:>7.1}");
    println!("  sluice worker, idle                         {rss_worker_idle:>7.1}");
    println!("  sluice worker, after 1 run                  {rss_worker_after:>7.1}");
    Ok(())
}

fn main() -> Result<()> {
    let options = options();
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(main_async(options))
}
