//! End-to-end cost of `sluice server` as real processes on 127.0.0.1, driven
//! through the HTTP API with the `bench_flow.wasm` guest (`bench/guest`),
//! with the state on SQLite and, beside it in the same run, on PostgreSQL
//! (a cluster this process starts with `initdb`, at PostgreSQL's default
//! durability: every commit flushed before it returns; see
//! `tests/support/pg_cluster.rs`). A *setup* is one `SLUICE_HOME` (the
//! artifact folder), one database, one or two `sluice server` processes and
//! the workers attached to them: the server's embedded worker, or a
//! `sluice worker` process per server (`--workers 0` on the servers).
//!
//! 1. **Deployment run latency**: a run of the `sequential` flow with
//!    `count=0` (no task), then `count=1` (one task), created with
//!    `POST /api/v1/deployments/{flow}/{name}/runs`, one at a time. Two
//!    views: (a) client-observed, from sending the POST until a
//!    `GET /api/v1/flow-runs/{id}?wait=60` sent right after it (a long
//!    poll, on the same server) answers `Completed`; (b) server-recorded, the run's `ended - created`;
//!    (c) after each such run, one created with `POST …/runs?wait=60`, which answers when it ended:
//!    creation and end in one request.
//!    Median / p90 / p99 in ms, and the medians of the recorded steps
//!    (created -> Pending -> Running -> Completed). With two servers, runs
//!    alternate between them: a run is taken by whichever worker claims it
//!    first, so half the time the run crosses servers (a `NOTIFY` wakes the
//!    other's worker). Every setup is alive at once and measured in rounds
//!    whose order rotates, so the machine's drift hits all alike.
//!    Then **per task through the server**: a run of 500 tasks (`--quick`: 20) in
//!    sequence per setup, (Completed - Running) / tasks as recorded.
//! 2. **Throughput**: N trivial runs created as fast as possible by 8
//!    concurrent client tasks (with two servers, half of the clients on
//!    each); runs/s = completed runs / (first POST -> last completion seen).
//!    Completion is detected after the last POST by polling
//!    `GET /api/v1/flow-runs?state=X&limit=1` for the non-terminal states in
//!    lifecycle order every 5 ms. The server-recorded span (first POST ->
//!    latest `ended`) is printed as a cross-check. Repeated, setups rotating.
//! 3. **Memory** (SQLite): VmRSS (/proc/PID/status) of an idle `sluice
//!    server` after startup + one run, of a `--workers 0` server, and of an
//!    idle `sluice worker` (and after it ran one run).
//!
//! Every setup gets its own temporary `SLUICE_HOME` and database; children
//! are killed on exit. The client, the servers, the workers and PostgreSQL
//! share this machine's CPUs.
//!
//! `make guests && cargo bench -p sluice --bench server_latency [-- --quick]`
//! (`--runs N`: N latency runs per setup and flow instead of 200)
//! (`--quick`, a smoke test: 10 latency runs on SQLite, PostgreSQL and two
//! servers on PostgreSQL, 100 throughput runs on SQLite and two servers on
//! PostgreSQL; `--sqlite`: only the SQLite setups; `--only latency,throughput`:
//! only those sections; `--vs LABEL=PATH`: every setup also with another
//! `sluice` binary, LABEL, measured in the same rounds: a before/after of the
//! server with the same client, interleaved).

#[path = "../../tests/support/pg_cluster.rs"]
#[allow(dead_code)] // what the tests use of it
mod pg_cluster;

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FLOW: &str = "sequential";
const CLIENTS: usize = 8;
const THROUGHPUT_POLL: Duration = Duration::from_millis(5);
/// Non-terminal states, in the order a run goes through them.
const NOT_DONE: [&str; 7] = ["Scheduled", "Late", "Pending", "Running", "AwaitingRetry", "Retrying", "Cancelling"];
const NOT_SUCCESS: [&str; 4] = ["Failed", "TimedOut", "Crashed", "Cancelled"];

struct Options {
    quick: bool,
    /// `--sqlite`: only the SQLite setups (quicker, for working on the embedded default).
    sqlite_only: bool,
    latency_rounds: usize,
    latency_runs_per_round: usize,
    throughput_runs: usize,
    throughput_reps: usize,
    per_task_rounds: usize,
    /// Tasks of the `many` deployment: per-task cost through the whole process.
    many_tasks: u32,
    /// The sections to run (`--only a,b`); all when empty.
    only: Vec<String>,
    /// Other `sluice` binaries to measure beside this build's (`--vs LABEL=PATH`).
    versus: Vec<(String, PathBuf)>,
}

impl Options {
    fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

/// The value of each `--flag VALUE` on the command line.
fn flag_values(flag: &str) -> Vec<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).filter(|pair| pair[0] == flag).map(|pair| pair[1].clone()).collect()
}

fn options() -> Options {
    let quick = std::env::args().any(|a| a == "--quick");
    let sqlite_only = std::env::args().any(|a| a == "--sqlite");
    let only =
        flag_values("--only").iter().flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>()).collect();
    let versus = flag_values("--vs")
        .iter()
        .map(|v| {
            let (label, path) = v.split_once('=').expect("--vs LABEL=PATH");
            (label.to_string(), PathBuf::from(path))
        })
        .collect();
    let options = if quick {
        Options {
            quick,
            sqlite_only,
            latency_rounds: 1,
            latency_runs_per_round: 10,
            throughput_runs: 100,
            throughput_reps: 1,
            per_task_rounds: 1,
            many_tasks: 20,
            only: Vec::new(),
            versus: Vec::new(),
        }
    } else {
        Options {
            quick,
            sqlite_only,
            latency_rounds: 5,
            latency_runs_per_round: 40,
            throughput_runs: 2000,
            throughput_reps: 3,
            per_task_rounds: 3,
            many_tasks: 500,
            only: Vec::new(),
            versus: Vec::new(),
        }
    };
    // More runs per round make the p99 more than the few slowest runs of 200.
    let latency_runs_per_round = flag_values("--runs")
        .first()
        .map(|n| n.parse::<usize>().expect("--runs N: runs per latency round") / options.latency_rounds)
        .unwrap_or(options.latency_runs_per_round)
        .max(1);
    Options { only, versus, latency_runs_per_round, ..options }
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
    /// Resident memory in MB, from /proc/PID/status.
    fn rss_mb(&self) -> Result<f64> {
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

/// Where a setup keeps its state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Database {
    Sqlite,
    /// Every commit flushed to disk before it returns (PostgreSQL's default).
    Postgres,
    /// `synchronous_commit = off` for Sluice's sessions, set in the URL
    /// (`?options=-c synchronous_commit=off`): a commit returns once it is in
    /// PostgreSQL's WAL buffers, flushed within 3 × `wal_writer_delay` (0.6 s).
    PostgresAsyncCommit,
}

impl Database {
    /// `SLUICE_DATABASE_URL` for a new database, or none for SQLite.
    fn new_url(self) -> Option<String> {
        let url = || pg_cluster::Cluster::durable().new_database();
        match self {
            Database::Sqlite => None,
            Database::Postgres => Some(url()),
            Database::PostgresAsyncCommit => Some(format!("{}?options=-c%20synchronous_commit%3Doff", url())),
        }
    }
}

/// Who runs the runs.
#[derive(Clone, Copy)]
enum Workers {
    /// Each server's embedded worker with this many slots (`--workers N`).
    Embedded(usize),
    /// A `sluice worker --limit N` process attached to each server (`--workers 0`).
    Attached(usize),
}

/// What to start: a database, a number of servers, their workers.
#[derive(Clone, Copy)]
struct Plan {
    database: Database,
    servers: usize,
    workers: Workers,
    /// Which of the bench's binaries: 0 for this build's.
    binary: usize,
}

impl Plan {
    fn label(&self, binaries: &[(String, PathBuf)]) -> String {
        let database = match self.database {
            Database::Sqlite => "SQLite",
            Database::Postgres => "PostgreSQL",
            Database::PostgresAsyncCommit => "PostgreSQL, `synchronous_commit=off`",
        };
        let servers = if self.servers == 1 { "1 server".to_string() } else { format!("{} servers", self.servers) };
        let workers = match self.workers {
            Workers::Embedded(slots) => format!("embedded worker ({slots} slots)"),
            Workers::Attached(limit) if self.servers == 1 => format!("a `sluice worker --limit {limit}`"),
            Workers::Attached(limit) => format!("a `sluice worker --limit {limit}` on each"),
        };
        let label = format!("{database}, {servers}, {workers}");
        match binaries.len() {
            1 => label,
            _ => format!("{label} [{}]", binaries[self.binary].0),
        }
    }
}

/// One setup, running: its processes drop (die) before its home goes.
struct Setup {
    label: String,
    /// `host:port` of each server.
    addresses: Vec<String>,
    /// The admin token the first server made.
    token: String,
    workers: Vec<Process>,
    servers: Vec<Process>,
    _home: tempfile::TempDir,
}

struct Bench {
    many_tasks: u32,
    /// The `sluice` binaries measured, labelled: this build's first.
    binaries: Vec<(String, PathBuf)>,
    component: PathBuf,
    cache: tempfile::TempDir,
    client: reqwest::Client,
}

impl Bench {
    /// A `sluice` command in `home`, its state where `database` says.
    fn command(&self, binary: usize, home: &Path, database: Option<&str>) -> Command {
        let mut command = Command::new(&self.binaries[binary].1);
        command
            .env("SLUICE_HOME", home)
            .env("SLUICE_CACHE_DIR", self.cache.path())
            .env_remove("SLUICE_API_URL")
            .env_remove("SLUICE_STORE_URL")
            .env_remove(sluice::store::DATABASE_URL_VARIABLE);
        if let Some(url) = database {
            command.env(sluice::store::DATABASE_URL_VARIABLE, url);
        }
        command
    }

    fn stderr_log(home: &Path, name: &str) -> Result<Stdio> {
        Ok(Stdio::from(std::fs::File::create(home.join(format!("{name}.stderr")))?))
    }

    /// Starts `plan` with the deployments `trivial` (count=0), `one-task`
    /// (count=1) and `many` (`many_tasks`), and runs `trivial` once through
    /// each server (not counted).
    async fn start(&self, plan: Plan) -> Result<Setup> {
        let home = tempfile::tempdir()?;
        let database = plan.database.new_url();
        let database = database.as_deref();
        for (name, count) in [("trivial", 0), ("one-task", 1), ("many", self.many_tasks)] {
            let output = self
                .command(plan.binary, home.path(), database)
                .arg("deploy")
                .arg(&self.component)
                .args(["--flow", FLOW, "--name", name, "--param", &format!("count={count}")])
                .output()?;
            ensure!(output.status.success(), "sluice deploy failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let slots = match plan.workers {
            Workers::Embedded(slots) => slots,
            Workers::Attached(_) => 0,
        };
        let (mut servers, mut addresses) = (Vec::new(), Vec::new());
        for i in 0..plan.servers {
            let (process, address) = self.server(plan.binary, home.path(), database, i, slots)?;
            servers.push(process);
            addresses.push(address);
        }
        let token = std::fs::read_to_string(home.path().join("admin-token")).context("reading the admin token")?;
        let token = token.trim().to_string();
        let mut workers = Vec::new();
        if let Workers::Attached(limit) = plan.workers {
            for (i, address) in addresses.iter().enumerate() {
                let child = self
                    .command(plan.binary, home.path(), database)
                    .args(["worker", "--api", &format!("http://{address}"), "--name", &format!("w{i}")])
                    .args(["--limit", &limit.to_string()])
                    .env("SLUICE_API_TOKEN", &token)
                    .stdout(Stdio::null())
                    .stderr(Self::stderr_log(home.path(), &format!("worker{i}"))?)
                    .spawn()
                    .context("starting sluice worker")?;
                workers.push(Process { child });
            }
        }
        let setup = Setup { label: plan.label(&self.binaries), addresses, token, workers, servers, _home: home };
        for server in 0..plan.servers {
            self.one_run(&setup, server, "trivial").await?;
        }
        Ok(setup)
    }

    /// `sluice server --port 0 --workers SLOTS` in `home`; its process and address.
    fn server(
        &self,
        binary: usize,
        home: &Path,
        database: Option<&str>,
        i: usize,
        slots: usize,
    ) -> Result<(Process, String)> {
        let mut child = self
            .command(binary, home, database)
            .args(["server", "--port", "0", "--workers", &slots.to_string()])
            .stdout(Stdio::piped())
            .stderr(Self::stderr_log(home, &format!("server{i}"))?)
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
        Ok((process, address))
    }

    async fn get(&self, setup: &Setup, server: usize, path: &str) -> Result<Value> {
        let url = format!("http://{}/api/v1{path}", setup.addresses[server]);
        let response = self.client.get(url).bearer_auth(&setup.token).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }

    /// Creates a run of deployment `name` through `server`, with `query`
    /// (`""`, or `"?wait=…"`); returns the answer's run.
    async fn post_run(&self, setup: &Setup, server: usize, name: &str, query: &str) -> Result<Value> {
        let url = format!("http://{}/api/v1/deployments/{FLOW}/{name}/runs{query}", setup.addresses[server]);
        let response = self.client.post(url).bearer_auth(&setup.token).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.as_u16() == 201, "POST run{query}: {status} {body}");
        Ok(body)
    }

    /// Creates a run of deployment `name` through `server`; returns its id.
    async fn create_run(&self, setup: &Setup, server: usize, name: &str) -> Result<String> {
        let body = self.post_run(setup, server, name, "").await?;
        Ok(body["id"].as_str().context("no run id")?.to_string())
    }

    /// Waits for the run to end with the API's long poll (`?wait=`: the
    /// server answers when the run's final state is committed); returns that
    /// inspection (`{"flow_run", "states", …}`), which must be `Completed`.
    async fn wait_completed(&self, setup: &Setup, server: usize, id: &str) -> Result<Value> {
        let run = self.get(setup, server, &format!("/flow-runs/{id}?wait=60")).await?;
        match run["flow_run"]["state"].as_str() {
            Some("Completed") => Ok(run),
            Some(state) if NOT_SUCCESS.contains(&state) => bail!("run {id} ended {state}: {run}"),
            _ => bail!("run {id} not Completed after 60 s: {run}"),
        }
    }

    /// A run created with `POST …/runs?wait=60`, which answers when it
    /// ended: the client-observed time of that one request, or none from a
    /// server that answers at once (a build from before `wait` was taken
    /// there), whose run is then awaited as usual and not counted.
    async fn create_and_wait(&self, setup: &Setup, server: usize, name: &str) -> Result<Option<f64>> {
        let start = Instant::now();
        let body = self.post_run(setup, server, name, "?wait=60").await?;
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        match body["state"].as_str() {
            Some("Completed") => Ok(Some(elapsed)),
            Some(state) if NOT_SUCCESS.contains(&state) => bail!("run ended {state}: {body}"),
            _ => {
                self.wait_completed(setup, server, body["id"].as_str().context("no run id")?).await?;
                Ok(None)
            }
        }
    }

    /// One run through `server`, start to end; returns the client-observed time.
    async fn one_run(&self, setup: &Setup, server: usize, name: &str) -> Result<Duration> {
        let start = Instant::now();
        let id = self.create_run(setup, server, name).await?;
        self.wait_completed(setup, server, &id).await?;
        Ok(start.elapsed())
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

fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    (percentile(&values, 0.5), percentile(&values, 0.9), percentile(&values, 0.99))
}

fn median(values: &[f64]) -> f64 {
    stats(values).0
}

#[derive(Default)]
struct Latency {
    client: Vec<f64>,
    server: Vec<f64>,
    post: Vec<f64>,
    to_pending: Vec<f64>,
    to_running: Vec<f64>,
    to_completed: Vec<f64>,
    /// `POST …/runs?wait=60`: creation and end in one request.
    one_request: Vec<f64>,
}

/// `runs` runs of deployment `name`, one at a time, alternating servers.
async fn latency(bench: &Bench, setup: &Setup, name: &str, runs: usize, l: &mut Latency) -> Result<()> {
    for i in 0..runs {
        let server = i % setup.addresses.len();
        let start = Instant::now();
        let id = bench.create_run(setup, server, name).await?;
        l.post.push(start.elapsed().as_secs_f64() * 1e3);
        let run = bench.wait_completed(setup, server, &id).await?;
        l.client.push(start.elapsed().as_secs_f64() * 1e3);
        let created = time_of(&run["flow_run"]["created"])?;
        let ended = time_of(&run["flow_run"]["ended"])?;
        let (pending, running) = (state_time(&run, "Pending")?, state_time(&run, "Running")?);
        l.server.push(ms(ended - created));
        l.to_pending.push(ms(pending - created));
        l.to_running.push(ms(running - pending));
        l.to_completed.push(ms(ended - running));
        l.one_request.extend(bench.create_and_wait(setup, server, name).await?);
    }
    Ok(())
}

struct Throughput {
    posted_s: f64,
    wall_s: f64,
    server_span_s: f64,
}

/// `runs` trivial runs from `CLIENTS` client tasks, client `c` on server `c % servers`.
async fn throughput(bench: &Bench, setup: &Setup, runs: usize) -> Result<Throughput> {
    let start = Instant::now();
    let start_wall = Utc::now();
    let per_client = runs.div_ceil(CLIENTS);
    let mut posts = Vec::new();
    for c in 0..CLIENTS {
        let n = per_client.min(runs.saturating_sub(c * per_client));
        let server = c % setup.addresses.len();
        posts.push(async move {
            for _ in 0..n {
                bench.create_run(setup, server, "trivial").await?;
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
            let found = bench.get(setup, 0, &format!("/flow-runs?state={state}&limit=1")).await?;
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
        let found = bench.get(setup, 0, &format!("/flow-runs?state={state}&limit=1000")).await?;
        ensure!(found.as_array().context("a list")?.is_empty(), "some runs ended {state}: {found}");
    }
    // None is left unfinished and none failed: every run is Completed. The
    // newest 1000 by creation hold the last to end (runs are taken FIFO).
    let completed = bench.get(setup, 0, "/flow-runs?state=Completed&limit=1000").await?;
    let completed = completed.as_array().context("a list")?;
    ensure!(completed.len() >= runs.min(1000), "{} runs Completed of {runs}", completed.len());
    let last_end = completed.iter().map(|r| time_of(&r["ended"])).collect::<Result<Vec<_>>>()?.into_iter().max();
    let server_span_s = last_end.map_or(f64::NAN, |end| ms(end - start_wall) / 1e3);
    Ok(Throughput { posted_s, wall_s, server_span_s })
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

fn rotated<T: Copy>(items: &[T], k: usize) -> Vec<T> {
    let k = k % items.len().max(1);
    items[k..].iter().chain(&items[..k]).copied().collect()
}

const SQLITE: Database = Database::Sqlite;
const POSTGRES: Database = Database::Postgres;
const POSTGRES_ASYNC: Database = Database::PostgresAsyncCommit;

fn plan(database: Database, servers: usize, workers: Workers) -> Plan {
    Plan { database, servers, workers, binary: 0 }
}

/// `plans` with each of the bench's binaries, the plan's setups of every binary next to each other.
fn for_each_binary(plans: Vec<Plan>, binaries: usize) -> Vec<Plan> {
    plans.into_iter().flat_map(|p| (0..binaries).map(move |binary| Plan { binary, ..p })).collect()
}

fn latency_plans(quick: bool) -> Vec<Plan> {
    let (embedded, attached) = (Workers::Embedded(4), Workers::Attached(4));
    if quick {
        return vec![plan(SQLITE, 1, embedded), plan(POSTGRES, 1, embedded), plan(POSTGRES, 2, attached)];
    }
    vec![
        plan(SQLITE, 1, embedded),
        plan(POSTGRES, 1, embedded),
        plan(POSTGRES_ASYNC, 1, embedded),
        plan(SQLITE, 1, attached),
        plan(POSTGRES, 1, attached),
        plan(POSTGRES, 2, attached),
        plan(POSTGRES_ASYNC, 2, attached),
    ]
}

fn throughput_plans(quick: bool) -> Vec<Plan> {
    let (embedded, attached) = (Workers::Embedded(8), Workers::Attached(8));
    if quick {
        return vec![plan(SQLITE, 1, embedded), plan(POSTGRES, 2, attached)];
    }
    vec![
        plan(SQLITE, 1, embedded),
        plan(POSTGRES, 1, embedded),
        plan(POSTGRES_ASYNC, 1, embedded),
        plan(POSTGRES, 2, embedded),
        plan(POSTGRES_ASYNC, 2, embedded),
        plan(SQLITE, 1, attached),
        plan(POSTGRES, 2, attached),
        plan(POSTGRES_ASYNC, 2, attached),
    ]
}

async fn latency_section(bench: &Bench, options: &Options) -> Result<()> {
    let mut setups = Vec::new();
    let plans = for_each_binary(latency_plans(options.quick), bench.binaries.len());
    for plan in plans.into_iter().filter(|p| !options.sqlite_only || p.database == SQLITE) {
        setups.push(bench.start(plan).await?);
    }
    let mut results: Vec<[Latency; 2]> = setups.iter().map(|_| Default::default()).collect();
    let order: Vec<usize> = (0..setups.len()).collect();
    for round in 0..options.latency_rounds {
        for i in rotated(&order, round) {
            for (flow, name) in ["trivial", "one-task"].into_iter().enumerate() {
                latency(bench, &setups[i], name, options.latency_runs_per_round, &mut results[i][flow]).await?;
            }
        }
    }
    // Per task through the whole process: a flow of MANY_TASKS tasks, from its Running to its Completed.
    let mut per_task: Vec<Vec<f64>> = setups.iter().map(|_| Vec::new()).collect();
    for round in 0..options.per_task_rounds {
        for i in rotated(&order, round) {
            let id = bench.create_run(&setups[i], 0, "many").await?;
            let run = bench.wait_completed(&setups[i], 0, &id).await?;
            let running = state_time(&run, "Running")?;
            let ended = time_of(&run["flow_run"]["ended"])?;
            per_task[i].push(ms(ended - running) * 1e3 / f64::from(options.many_tasks));
        }
    }
    let n = options.latency_rounds * options.latency_runs_per_round;
    println!("\n### Deployment run latency: POST until a GET reads `Completed`, one run at a time ({n} runs each)\n");
    println!(
        "| setup | flow | median ms | p90 | p99 | server's record, median ms | POST rtt | created→Pending | \
         Pending→Running | Running→Completed | one request (`POST …?wait=60`): median / p99 ms |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (setup, by_flow) in setups.iter().zip(&results) {
        for (flow, l) in ["count=0", "count=1"].iter().zip(by_flow) {
            let (p50, p90, p99) = stats(&l.client);
            let one_request = match l.one_request.is_empty() {
                true => "–".to_string(),
                false => format!("{:.2} / {:.2}", median(&l.one_request), stats(&l.one_request).2),
            };
            println!(
                "| {} | {flow} | {p50:.2} | {p90:.2} | {p99:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {one_request} |",
                setup.label,
                median(&l.server),
                median(&l.post),
                median(&l.to_pending),
                median(&l.to_running),
                median(&l.to_completed)
            );
        }
    }
    println!(
        "\nThe tail, segment by segment: each column's own p99 (ms), to find which part the slow runs spend it in.\n"
    );
    println!(
        "| setup | flow | client p99 | server's record | POST rtt | created→Pending | Pending→Running | Running→Completed |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (setup, by_flow) in setups.iter().zip(&results) {
        for (flow, l) in ["count=0", "count=1"].iter().zip(by_flow) {
            let p99 = |values: &[f64]| stats(values).2;
            println!(
                "| {} | {flow} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                setup.label,
                p99(&l.client),
                p99(&l.server),
                p99(&l.post),
                p99(&l.to_pending),
                p99(&l.to_running),
                p99(&l.to_completed)
            );
        }
    }
    println!(
        "\n### Per task through the server: a run of {} trivial tasks in sequence, Running → Completed \
         as recorded ({} runs each)\n",
        options.many_tasks, options.per_task_rounds
    );
    println!("| setup | median µs/task | each run |\n| --- | ---: | --- |");
    for (setup, values) in setups.iter().zip(&per_task) {
        let each = values.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ");
        println!("| {} | {:.1} | {each} |", setup.label, median(values));
    }
    Ok(())
}

async fn throughput_section(bench: &Bench, options: &Options) -> Result<()> {
    let mut setups = Vec::new();
    let plans = for_each_binary(throughput_plans(options.quick), bench.binaries.len());
    for plan in plans.into_iter().filter(|p| !options.sqlite_only || p.database == SQLITE) {
        setups.push(bench.start(plan).await?);
    }
    let mut results: Vec<Vec<Throughput>> = setups.iter().map(|_| Vec::new()).collect();
    let order: Vec<usize> = (0..setups.len()).collect();
    for rep in 0..options.throughput_reps {
        for i in rotated(&order, rep) {
            settle().await;
            let t = throughput(bench, &setups[i], options.throughput_runs).await?;
            eprintln!(
                "throughput rep {rep} {}: {:.0} runs/s",
                setups[i].label,
                options.throughput_runs as f64 / t.wall_s
            );
            results[i].push(t);
        }
    }
    let runs = options.throughput_runs;
    println!("\n### Throughput: {runs} trivial runs from {CLIENTS} concurrent clients, until all are `Completed`\n");
    println!(
        "| setup | reps | runs/s, median | each rep | POSTs done, median s | all Completed, median s | server span, median s | server RSS after, MB |"
    );
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    for (setup, ts) in setups.iter().zip(&results) {
        let rates: Vec<f64> = ts.iter().map(|t| runs as f64 / t.wall_s).collect();
        let each = rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
        let rss = setup.servers.iter().map(|s| s.rss_mb().map(|m| format!("{m:.1}"))).collect::<Result<Vec<_>>>()?;
        println!(
            "| {} | {} | {:.0} | {each} | {:.2} | {:.2} | {:.2} | {} |",
            setup.label,
            ts.len(),
            median(&rates),
            median(&ts.iter().map(|t| t.posted_s).collect::<Vec<_>>()),
            median(&ts.iter().map(|t| t.wall_s).collect::<Vec<_>>()),
            median(&ts.iter().map(|t| t.server_span_s).collect::<Vec<_>>()),
            rss.join(" + ")
        );
    }
    Ok(())
}

async fn memory_section(bench: &Bench) -> Result<()> {
    let server = bench.start(plan(SQLITE, 1, Workers::Embedded(4))).await?;
    settle().await;
    let rss_server_idle = server.servers[0].rss_mb()?;
    drop(server);
    let server = bench.start(plan(SQLITE, 1, Workers::Attached(4))).await?;
    settle().await;
    let rss_server_no_worker = server.servers[0].rss_mb()?;
    let rss_worker_after = server.workers[0].rss_mb()?;
    println!("\n### Memory (VmRSS, MB; SQLite)\n");
    println!("| process | MB |\n| --- | ---: |");
    println!("| `sluice server`, idle after startup + 1 run | {rss_server_idle:.1} |");
    println!("| `sluice server --workers 0`, idle after 1 run on an attached worker | {rss_server_no_worker:.1} |");
    println!("| `sluice worker`, idle after 1 run | {rss_worker_after:.1} |");
    Ok(())
}

async fn main_async(options: Options) -> Result<()> {
    let bench = Bench {
        many_tasks: options.many_tasks,
        binaries: std::iter::once(("HEAD".to_string(), PathBuf::from(env!("CARGO_BIN_EXE_sluice"))))
            .chain(options.versus.iter().cloned())
            .collect(),
        component: component_path(),
        cache: tempfile::tempdir()?,
        client: reqwest::Client::builder().no_proxy().build()?,
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "sluice server bench: bench_flow.wasm `{FLOW}`, {cpus} CPUs shared by client, servers, workers and \
         PostgreSQL{}",
        if options.quick { " (--quick)" } else { "" }
    );
    if options.runs("latency") {
        latency_section(&bench, &options).await?;
    }
    if options.runs("throughput") {
        throughput_section(&bench, &options).await?;
    }
    if options.runs("memory") {
        memory_section(&bench).await?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let options = options();
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(main_async(options))
}
