//! The web UI under a long history: a `sluice server` whose database holds
//! 100,000 flow runs (spread over 30 days, 7 deployments' worth of states)
//! written straight into its SQLite file, then:
//!
//! 1. **Page time**: each main page fetched N times, one at a time, over
//!    HTTP on 127.0.0.1 with a session cookie; median and p90 of the time
//!    to the last byte of the HTML, in ms. Deep pages too: the runs list
//!    filtered by state, deployment, tag and time, and a page 1,000 runs
//!    deep (keyset cursor).
//! 2. **Live latency**: a run's page stream (`GET /runs/{id}/events`) is
//!    open; a worker reports a state change through the API
//!    (`POST /api/v1/workers/{name}/events`); the time from sending that
//!    POST until the stream delivers panels showing the new state. Pending,
//!    Running and Completed of each run are three samples.
//!
//! `make guests && cargo bench -p sluice --bench ui_pages [-- --quick] [--last-day]`
//! (`--quick`: 10,000 runs, 5 fetches per page, 3 runs; a smoke test.
//! `--last-day`: every run in the last 24 h, the dashboard's worst case).

use anyhow::{Context, Result, ensure};
use chrono::{Duration as Span, Utc};
use rusqlite::params;
use serde_json::json;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Options {
    quick: bool,
    /// Days the seeded runs spread over (`--last-day`: 1, the dashboard's worst case).
    days: i64,
    runs: usize,
    fetches: usize,
    live_runs: usize,
}

fn options() -> Options {
    let days = if std::env::args().any(|a| a == "--last-day") { 1 } else { 30 };
    if std::env::args().any(|a| a == "--quick") {
        Options { quick: true, days, runs: 10_000, fetches: 5, live_runs: 3 }
    } else {
        Options { quick: false, days, runs: 100_000, fetches: 50, live_runs: 30 }
    }
}

fn guest(name: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo.join("target"));
    let path = target.join(format!("wasm32-wasip2/guest/{name}.wasm"));
    assert!(path.exists(), "build the guests first: make guests ({} is missing)", path.display());
    path
}

/// The server process, killed and reaped on drop (before its home goes).
struct Server {
    child: Child,
    address: String,
    /// An admin token of the default tenant: signs in to the UI, and the API's bearer.
    token: String,
    /// The session cookie signing in with `token` set.
    cookie: String,
    _home: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sluice(home: &Path, cache: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.env("SLUICE_HOME", home).env("SLUICE_CACHE_DIR", cache).env_remove("SLUICE_API_URL");
    command
}

const DEPLOYMENTS: [&str; 7] = ["leo", "marvin", "ford", "arthur", "trillian", "zaphod", "slartibartfast"];

/// Deploys hello/* and writes `runs` finished flow runs (with their states) into the database.
fn seed(home: &Path, cache: &Path, runs: usize, days: i64) -> Result<()> {
    let hello = guest("hello_flow");
    for (i, name) in DEPLOYMENTS.iter().enumerate() {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        let output = sluice(home, cache)
            .args(["deploy", hello.to_str().unwrap(), "--flow", "hello", "--name", name])
            .args(["--param", &format!("name={name}"), "--tag", tag])
            .output()?;
        ensure!(output.status.success(), "deploy: {}", String::from_utf8_lossy(&output.stderr));
    }
    let artifact: String = {
        let db = rusqlite::Connection::open(home.join("sluice.db"))?;
        db.query_row("SELECT digest FROM artifacts LIMIT 1", [], |r| r.get(0))?
    };
    let mut db = rusqlite::Connection::open(home.join("sluice.db"))?;
    let tx = db.transaction()?;
    {
        let mut run = tx.prepare(
            "INSERT INTO flow_runs (id, name, flow, deployment, artifact, parameters, state, message, result,
             created, scheduled, started, ended, claimed_by) VALUES (?1, ?2, 'hello', ?3, ?4, '{}', ?5, ?6, ?7, ?8, ?8, ?8, ?9, 'seed')",
        )?;
        let mut state = tx.prepare(
            "INSERT INTO states (run, seq, kind, state, message, attempt, time)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM states WHERE run = ?1), 'flow', ?2, NULL, 1, ?3)",
        )?;
        let now = Utc::now();
        let stamp = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        for i in 0..runs {
            // Oldest first, `days` back (less two minutes) to a minute ago.
            let back = ((runs - i) as i64 * (days * 86_400_000 - 120_000)) / runs as i64;
            let created = now - Span::seconds(60) - Span::milliseconds(back);
            let id = uuid::Uuid::now_v7().to_string();
            let (final_state, message, result) =
                if i % 10 == 3 { ("Failed", Some("boom"), None) } else { ("Completed", None, Some("\"Said hello\"")) };
            let deployment = format!("hello/{}", DEPLOYMENTS[i % DEPLOYMENTS.len()]);
            let ended = created + Span::milliseconds(40);
            run.execute(params![
                id,
                format!("seeded-run-{i}"),
                deployment,
                artifact,
                final_state,
                message,
                result,
                stamp(created),
                stamp(ended)
            ])?;
            for (name, at) in [("Scheduled", created), ("Pending", created), ("Running", created), (final_state, ended)]
            {
                state.execute(params![id, name, stamp(at)])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

fn start(home: tempfile::TempDir, cache: &Path) -> Result<Server> {
    let made = sluice(home.path(), cache).args(["token", "create", "--role", "admin"]).output()?;
    ensure!(made.status.success(), "token create: {}", String::from_utf8_lossy(&made.stderr));
    let token = String::from_utf8(made.stdout)?.trim().to_string();
    let mut child = sluice(home.path(), cache)
        .args(["server", "--port", "0", "--workers", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().context("the server printed nothing")??;
    let address = first.split("http://").nth(1).and_then(|r| r.split(' ').next()).context("no address")?.to_string();
    std::thread::spawn(move || for _ in lines {});
    let cookie = sign_in(&address, &token)?;
    Ok(Server { child, address, token, cookie, _home: home })
}

/// Signs in through the form, as a browser does; returns the session cookie it sets.
fn sign_in(address: &str, token: &str) -> Result<String> {
    use std::io::{Read, Write};
    let body = format!("token={token}&next=%2F");
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(
        stream,
        "POST /signin HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let set = answer
        .lines()
        .find_map(|line| line.to_ascii_lowercase().starts_with("set-cookie:").then(|| line[11..].trim().to_string()))
        .with_context(|| format!("signing in set no cookie: {answer}"))?;
    Ok(set.split(';').next().unwrap_or_default().to_string())
}

fn median_p90(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    (at(0.5), at(0.9))
}

async fn fetch(client: &reqwest::Client, server: &Server, path: &str) -> Result<(Duration, String)> {
    let start = Instant::now();
    let response =
        client.get(format!("http://{}{path}", server.address)).header("cookie", &server.cookie).send().await?;
    let status = response.status();
    let body = response.text().await?;
    let elapsed = start.elapsed();
    ensure!(status.is_success(), "GET {path}: {status}");
    Ok((elapsed, body))
}

async fn pages(client: &reqwest::Client, server: &Server, options: &Options) -> Result<()> {
    let (_, first_page) = fetch(client, server, "/runs").await?;
    let sample_run =
        first_page.split("data-run=\"").nth(1).and_then(|r| r.split('"').next()).context("no run listed")?.to_string();
    // A cursor 1,000 runs deep: follow "Older" 20 times.
    let mut deep = "/runs".to_string();
    for _ in 0..20 {
        let (_, body) = fetch(client, server, &deep).await?;
        let next =
            body.split("rel=\"next\" href=\"").nth(1).and_then(|r| r.split('"').next()).context("no next page")?;
        deep = next.replace("&amp;", "&");
    }
    let paths = [
        "/".to_string(),
        "/deployments".into(),
        "/deployments/hello/leo".into(),
        "/deployments/hello/leo/custom-run".into(),
        "/runs".into(),
        "/runs?state=Failed".into(),
        "/runs?deployment=hello/marvin".into(),
        "/runs?tag=odd".into(),
        "/runs?since=24h&state=Completed".into(),
        deep,
        format!("/runs/{sample_run}"),
        "/artifacts".into(),
        "/work-pools".into(),
    ];
    println!("{:<44} {:>9} {:>9}", "page", "median ms", "p90 ms");
    for path in &paths {
        fetch(client, server, path).await?; // warm-up
        let mut times = Vec::new();
        for _ in 0..options.fetches {
            times.push(fetch(client, server, path).await?.0.as_secs_f64() * 1000.0);
        }
        let (median, p90) = median_p90(times);
        let shown = if path.contains("before=") { "/runs (1,000 runs deep)" } else { path.as_str() };
        println!("{shown:<44} {median:>9.2} {p90:>9.2}");
    }
    Ok(())
}

/// Reads the stream until a `panels` event shows `state`.
async fn until_state(stream: &mut reqwest::Response, buffer: &mut String, state: &str) -> Result<()> {
    let needle = format!("data-state=\"{state}\"");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Whole events end with a blank line; look at complete ones only.
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if event.contains("event: panels") && event.contains(&needle) {
                return Ok(());
            }
        }
        ensure!(Instant::now() < deadline, "no panels showing {state} within 10 s");
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await??.context("stream ended")?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn live(client: &reqwest::Client, server: &Server, options: &Options) -> Result<()> {
    let base = format!("http://{}", server.address);
    let mut samples = Vec::new();
    for _ in 0..options.live_runs {
        let run: serde_json::Value = client
            .post(format!("{base}/api/v1/deployments/hello/leo/runs"))
            .bearer_auth(&server.token)
            .send()
            .await?
            .json()
            .await?;
        let id = run["id"].as_str().context("no run id")?.to_string();
        let claimed: serde_json::Value = client
            .post(format!("{base}/api/v1/workers/bench/claim"))
            .bearer_auth(&server.token)
            .json(&json!({"limit": 1, "wait_ms": 1000}))
            .send()
            .await?
            .json()
            .await?;
        ensure!(claimed[0]["run"]["id"] == id.as_str(), "claimed something else: {claimed}");
        let mut stream = client
            .get(format!("{base}/runs/{id}/events"))
            .header("cookie", &server.cookie)
            .header("accept", "text/event-stream")
            .send()
            .await?;
        let mut buffer = String::new();
        until_state(&mut stream, &mut buffer, "Scheduled").await?;
        for state in ["Pending", "Running", "Completed"] {
            let event = json!([{"State": {"run": id, "kind": "Flow", "state": state, "message": null, "attempt": 1,
                "result": if state == "Completed" { json!("\"done\"") } else { json!(null) }, "time": Utc::now()}}]);
            let start = Instant::now();
            let posted = client
                .post(format!("{base}/api/v1/workers/bench/events"))
                .bearer_auth(&server.token)
                .json(&event)
                .send()
                .await?;
            ensure!(posted.status().is_success(), "events refused: {}", posted.text().await?);
            until_state(&mut stream, &mut buffer, state).await?;
            samples.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let (median, p90) = median_p90(samples.clone());
    println!(
        "state change -> open run page ({} changes): median {median:.2} ms, p90 {p90:.2} ms, max {:.2} ms",
        samples.len(),
        samples.iter().cloned().fold(0.0, f64::max)
    );
    Ok(())
}

async fn main_async(options: Options) -> Result<()> {
    let cache = tempfile::tempdir()?;
    let home = tempfile::tempdir()?;
    let seeding = Instant::now();
    seed(home.path(), cache.path(), options.runs, options.days)?;
    println!(
        "ui pages bench: {} flow runs over {} days seeded in {:.1} s{}",
        options.runs,
        options.days,
        seeding.elapsed().as_secs_f64(),
        if options.quick { " (--quick)" } else { "" }
    );
    let server = start(home, cache.path())?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    pages(&client, &server, &options).await?;
    live(&client, &server, &options).await?;
    Ok(())
}

fn main() -> Result<()> {
    let options = options();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(main_async(options))
}
