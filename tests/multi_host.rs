//! Sluice on several hosts of one machine (`support/hosts.rs`: a network
//! namespace each, on a bridge in a private subnet; 127.0.0.1 with ports and
//! homes of their own where namespaces cannot be made): PostgreSQL, the
//! object store (moto), two `sluice server`s, three `sluice worker`s and
//! three load clients, each on its own host.
//!
//! Under load (3,000 runs of a flow with a task, created by the clients
//! through both servers) the server holding the housekeeping lease and a
//! worker are killed with SIGKILL; the killed server's supervisor restarts
//! it once the other has taken over. The workers take their runs from the
//! other server: a worker whose own server dies mid-request meets two known
//! faults, each pinned by a test of its own below
//! (`a_report_sent_again_after_its_answer_was_lost_is_recorded_once`,
//! `runs_claimed_by_a_request_whose_answer_was_lost_still_run`). Then every
//! run must end exactly once (a `Crashed` end may be followed by a retry and
//! a later end), the killed worker's runs end `Crashed` and are retried as
//! their deployment says, no run runs twice at once or changes holder but
//! through a crash, every acknowledged run exists and completed, and the
//! surviving server runs the scheduler and crash detection.
//!
//! To see each run's holders, the test adds two triggers of its own to the
//! database (after the servers migrated it): one logs every change of
//! `flow_runs.claimed_by`, the other the holder of a run when each of its
//! states is written. They only observe.

#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/history.rs"]
mod history;
#[path = "support/hosts.rs"]
mod hosts;
#[path = "support/lossy_proxy.rs"]
mod lossy_proxy;
#[path = "support/pg_cluster.rs"]
mod pg_cluster;
mod support;

use chrono::{DateTime, Utc};
use fleet::{Installation, Load, ObjectStore};
use history::{ClaimChange, State, check_claims, check_killed_worker, check_states};
use hosts::{Network, SUBNET};
use pg_cluster::{Cluster, Tcp};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use support::guest;

/// Runs created by the load clients, all told.
const RUNS: usize = 3_000;
/// Load clients, each on a host of its own.
const CLIENTS: usize = 3;
/// Seconds without a heartbeat before a worker's runs are `Crashed`.
const HEARTBEAT_TIMEOUT: &str = "8";
/// Retries after a crash, as the deployments say.
const CRASH_RETRIES: &str = "2";

/// Observers of who holds which run, added to the test's own database.
const AUDIT: &str = "
CREATE TABLE test_claims (seq BIGSERIAL PRIMARY KEY, run TEXT NOT NULL, old TEXT, new TEXT);
CREATE FUNCTION test_log_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO test_claims (run, old, new) VALUES (NEW.id, OLD.claimed_by, NEW.claimed_by); RETURN NEW; END $$;
CREATE TRIGGER test_log_claim AFTER UPDATE OF claimed_by ON flow_runs FOR EACH ROW
    WHEN (OLD.claimed_by IS DISTINCT FROM NEW.claimed_by) EXECUTE FUNCTION test_log_claim();
CREATE TABLE test_state_holders (state_seq BIGINT PRIMARY KEY, holder TEXT);
CREATE FUNCTION test_log_holder() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO test_state_holders SELECT NEW.seq, claimed_by FROM flow_runs WHERE id = NEW.run; RETURN NEW; END $$;
CREATE TRIGGER test_log_holder AFTER INSERT ON states FOR EACH ROW WHEN (NEW.kind = 'flow')
    EXECUTE FUNCTION test_log_holder();
";

/// A flow run as the end of the test reads it.
#[derive(Debug, Deserialize)]
struct Run {
    id: String,
    deployment: Option<String>,
    parent: Option<String>,
    state: Option<String>,
    created: DateTime<Utc>,
    ended: Option<String>,
    auto_scheduled: bool,
}

/// Rows of `sql` (a `SELECT` of one row per value), read as JSON.
fn rows<T: serde::de::DeserializeOwned>(cluster: &Cluster, url: &str, sql: &str) -> Vec<T> {
    let json = cluster.psql(url, &format!("SELECT coalesce(json_agg(x), '[]') FROM ({sql}) x"));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("reading {sql}: {e}"))
}

fn count(cluster: &Cluster, url: &str, sql: &str) -> usize {
    cluster.psql(url, sql).parse().unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Polls `check` every half second (each poll runs `psql`: the machine is
/// busy enough) until it returns `Some`, for at most `seconds`.
fn wait_for<T>(seconds: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {seconds} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn runs_survive_a_killed_server_and_worker_on_a_network_of_hosts() {
    let started = Instant::now();
    let phase = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
    let names = [
        "postgres",
        "object-store",
        "server-a",
        "server-b",
        "worker-1",
        "worker-2",
        "worker-3",
        "client-1",
        "client-2",
        "client-3",
    ];
    let network = Network::new(&names);
    let host = |name: &str| network.host(name);

    // PostgreSQL on its own host, over TCP; the test reads it through its unix socket.
    let own_cluster;
    let cluster: &Cluster = if network.namespaced() {
        let postgres = host("postgres");
        own_cluster =
            Cluster::start_on(Tcp { netns: postgres.netns.clone(), address: postgres.ip, clients: SUBNET.to_string() });
        &own_cluster
    } else {
        Cluster::shared()
    };
    let db = cluster.new_database();
    let database_url =
        if network.namespaced() { cluster.tcp_url(db.rsplit('/').next().expect("a name")) } else { db.clone() };
    let store = ObjectStore::start(host("object-store"));
    phase(&format!("PostgreSQL at {database_url}, moto at {}", store.endpoint));

    let scratch = tempfile::tempdir().unwrap();
    let home = |name: &str| {
        let dir = scratch.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    let secrets_key = scratch.path().join("secrets.key");
    std::fs::write(&secrets_key, hex::encode(rand::random::<[u8; 32]>())).unwrap();
    let installation = Installation { database_url, store_env: store.env(), secrets_key };

    let server_args = ["--heartbeat-timeout", HEARTBEAT_TIMEOUT];
    let port_a = host("server-a").port(4200);
    let a = installation.server(host("server-a"), port_a, home("server-a"), &server_args);
    assert!(a.says_it_leads(Duration::from_secs(30)), "the first server takes the housekeeping lease");
    cluster.psql(&db, AUDIT);
    let b = installation.server(host("server-b"), host("server-b").port(4200), home("server-b"), &server_args);
    let token = a.admin_token();
    phase(&format!("servers at {} (leads) and {}", a.url, b.url));

    // Deployed through the servers, from a client host: the artifacts go to the object store.
    let client_home = home("client-1");
    let deploy = |server: &str, args: &[&str]| {
        let output = installation.cli(host("client-1"), &client_home, server, &token).arg("deploy").args(args).output();
        let output = output.unwrap();
        let (stdout, stderr) = support::texts(&output);
        assert!(output.status.success(), "sluice deploy {args:?}: {stdout}{stderr}");
    };
    let hello = guest("hello_flow");
    let pipeline = guest("pipeline_flow");
    let retries = ["--retries", CRASH_RETRIES, "--retry-delay", "1"];
    let mut load_deployment =
        vec![hello.to_str().unwrap(), "--flow", "hello", "--name", "load", "--param", "name=Load"];
    load_deployment.extend(retries);
    deploy(&a.url, &load_deployment);
    // Scheduled every 5 s: runs the scheduler creates show that it keeps going.
    let mut scheduled = vec![pipeline.to_str().unwrap(), "--flow", "pipeline", "--name", "every", "--interval", "5"];
    scheduled.extend(retries);
    deploy(&b.url, &scheduled);

    let mut workers: BTreeMap<&str, support::Process> = BTreeMap::new();
    for name in ["w1", "w2", "w3"] {
        let on = host(&format!("worker-{}", &name[1..]));
        workers.insert(name, installation.worker(on, home(name), name, &b.url, &token));
    }
    phase("three workers started, taking runs from server B");

    let clients: Vec<&hosts::Host> = (1..=CLIENTS).map(|i| host(&format!("client-{i}"))).collect();
    let mut load = Load::start(&clients, &[a.url.clone(), b.url.clone()], &token, "hello/load", RUNS / CLIENTS);

    // Mid-way: a third of the runs acknowledged and w3 running some.
    wait_for(180, "a third of the runs acknowledged and w3 running two", || {
        let running = "SELECT count(*) FROM flow_runs WHERE claimed_by = 'w3' AND state = 'Running'";
        (load.acknowledged() >= RUNS / 3 && count(cluster, &db, running) >= 2).then_some(())
    });
    assert!(!b.has_said_it_leads(), "server A holds the lease until it is killed");
    let mut a = a;
    a.process.child.kill().unwrap();
    workers.get_mut("w3").unwrap().child.kill().unwrap();
    let killed_at = Utc::now();
    let killed = Instant::now();
    a.process.child.wait().unwrap();
    phase(&format!("killed server A (the leader) and worker w3 with {} runs acknowledged", load.acknowledged()));

    assert!(b.says_it_leads(Duration::from_secs(20)), "server B takes over the scheduler and crash detection");
    let took = killed.elapsed();
    phase(&format!("server B took the housekeeping lease {took:.1?} after A was killed"));
    assert!(took < Duration::from_secs(12), "{took:?}: a 5 s lease and a 1 s tick");
    // Its supervisor restarts A (same host, home and port); B keeps the lease.
    let a = installation.server(host("server-a"), port_a, a.home.clone(), &server_args);
    phase("server A restarted");

    load.wait(Duration::from_secs(300));
    phase(&format!("the clients are done: {} runs acknowledged", load.acknowledged()));

    // The scheduler moved: B creates the scheduled runs now.
    let scheduled_after = wait_for(60, "a scheduled run created after the kill", || {
        let found: Vec<Run> = rows(
            cluster,
            &db,
            "SELECT id, deployment, parent, state, created, ended, auto_scheduled FROM flow_runs WHERE auto_scheduled",
        );
        found.into_iter().find(|run| run.created > killed_at)
    });
    phase(&format!("the scheduler made run {} after the kill", scheduled_after.id));
    let paused = installation
        .cli(host("client-1"), &client_home, &b.url, &token)
        .args(["deployment", "pause", "pipeline/every"])
        .output()
        .unwrap();
    assert!(paused.status.success(), "{}", support::texts(&paused).1);

    let open = "SELECT count(*) FROM flow_runs WHERE ended IS NULL";
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(300, "every run to end", || (count(cluster, &db, open) == 0).then_some(()))
    }));
    if let Err(timed_out) = waited {
        let left = cluster.psql(
            &db,
            "SELECT state, coalesce(claimed_by, '-'), count(*) FROM flow_runs WHERE ended IS NULL GROUP BY 1, 2",
        );
        let workers = cluster.psql(&db, "SELECT name, last_seen FROM workers ORDER BY name");
        eprintln!("runs not ended, by state and holder:\n{left}\nworkers last seen:\n{workers}");
        std::panic::resume_unwind(timed_out);
    }
    phase("every run ended");
    drop(a);

    // What was acknowledged exists and completed, once each.
    let log = load.log.lock().unwrap();
    let acknowledged: HashSet<&str> = log.acknowledged.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!((log.acknowledged.len(), acknowledged.len()), (RUNS, RUNS), "each acknowledged once, with its own id");
    let runs: Vec<Run> =
        rows(cluster, &db, "SELECT id, deployment, parent, state, created, ended, auto_scheduled FROM flow_runs");
    let by_id: HashMap<&str, &Run> = runs.iter().map(|run| (run.id.as_str(), run)).collect();
    for id in &acknowledged {
        let run = by_id.get(id).unwrap_or_else(|| panic!("acknowledged run {id} was lost"));
        assert_eq!(
            (run.state.as_deref(), run.deployment.as_deref()),
            (Some("Completed"), Some("hello/load")),
            "{run:?}"
        );
    }
    let unacknowledged = runs.iter().filter(|r| r.deployment.as_deref() == Some("hello/load")).count() - RUNS;
    let failed_requests = log.failed.len();
    drop(log);
    for run in runs.iter().filter(|run| run.parent.is_none()) {
        assert_eq!(run.state.as_deref(), Some("Completed"), "{run:?}");
        assert!(run.ended.is_some(), "{run:?}");
    }
    assert!(runs.iter().any(|r| r.auto_scheduled && r.deployment.as_deref() == Some("pipeline/every")));

    // Every history: one end (or crashes, each retried), never two runs at once, holders changed only by crashes.
    let states: Vec<State> = rows(
        cluster,
        &db,
        "SELECT s.run, s.seq, s.state, coalesce(s.message, '') AS message, s.time, h.holder FROM states s
         LEFT JOIN test_state_holders h ON h.state_seq = s.seq WHERE s.kind = 'flow' ORDER BY s.run, s.seq",
    );
    let claims: Vec<ClaimChange> = rows(cluster, &db, "SELECT seq, run, old, new FROM test_claims ORDER BY seq");
    let mut histories: HashMap<&str, Vec<State>> = HashMap::new();
    for state in states {
        histories.entry(by_id.get(state.run.as_str()).map_or("?", |r| r.id.as_str())).or_default().push(state);
    }
    let mut changes: HashMap<&str, Vec<ClaimChange>> = HashMap::new();
    for change in claims {
        changes.entry(by_id.get(change.run.as_str()).map_or("?", |r| r.id.as_str())).or_default().push(change);
    }
    let (mut crashed, mut crashed_by) = (0, BTreeMap::<String, usize>::new());
    let mut killed_worker_runs = 0;
    let mut repeated = Vec::new();
    for run in &runs {
        let history = histories.get(run.id.as_str()).map(Vec::as_slice).unwrap_or_default();
        let life = check_states(history).unwrap_or_else(|e| panic!("run {}: {e}\n{history:#?}", run.id));
        if !life.repeated.is_empty() {
            repeated.push((run.id.clone(), life.repeated.clone(), history.to_vec()));
        }
        let changes = changes.get(run.id.as_str()).map(Vec::as_slice).unwrap_or_default();
        check_claims(changes, &life).unwrap_or_else(|e| panic!("run {}: {e}\n{changes:#?}\n{history:#?}", run.id));
        if check_killed_worker(history, "w3").unwrap_or_else(|e| panic!("run {}: {e}\n{history:#?}", run.id)) {
            killed_worker_runs += 1;
            let retries = history.iter().filter(|s| s.message.starts_with("Retry ")).count();
            assert!(retries >= 1 && life.end == "Completed", "run {} was not retried: {history:#?}", run.id);
        }
        if run.parent.is_none() && !life.crashed_holders.is_empty() {
            crashed += 1;
            for holder in &life.crashed_holders {
                *crashed_by.entry(holder.clone()).or_default() += 1;
            }
        }
    }
    assert!(!histories.contains_key("?") && !changes.contains_key("?"), "states or claims of runs that do not exist");
    eprintln!(
        "{} flow runs ({} root runs); {RUNS} acknowledged, {unacknowledged} created without an answer, \
         {failed_requests} requests failed; {crashed} crashed and retried (crashes by holder: {crashed_by:?}); \
         {killed_worker_runs} runs of the killed worker w3",
        runs.len(),
        runs.iter().filter(|r| r.parent.is_none()).count()
    );
    assert!(killed_worker_runs >= 1, "the killed worker had runs going; they must end Crashed and be retried");
    // Only the killed worker's runs crash.
    assert!(crashed_by.keys().all(|w| w == "w3"), "{crashed_by:?}");
    let task_runs_open = count(cluster, &db, "SELECT count(*) FROM task_runs WHERE ended IS NULL");
    assert_eq!(task_runs_open, 0, "task runs left without an end");
    // Checked last, so a run that hits it does not hide the checks above.
    assert!(
        repeated.is_empty(),
        "{} runs have states recorded twice (same state, time and holder: a report applied twice); the first: {:#?}",
        repeated.len(),
        repeated.first()
    );
    phase("checked");
}

mod checks {
    //! The history checks catch what they are meant to catch.

    use super::history::{ClaimChange, State, check_claims, check_killed_worker, check_states};

    fn states(list: &[(&str, &str, Option<&str>)]) -> Vec<State> {
        list.iter()
            .enumerate()
            .map(|(i, (state, message, holder))| State {
                run: "r".into(),
                seq: i as i64,
                state: state.to_string(),
                message: message.to_string(),
                time: chrono::DateTime::from_timestamp(1_000 + i as i64, 0).unwrap(),
                holder: holder.map(str::to_string),
            })
            .collect()
    }

    fn claims(list: &[(Option<&str>, Option<&str>)]) -> Vec<ClaimChange> {
        list.iter()
            .enumerate()
            .map(|(i, (old, new))| ClaimChange {
                run: "r".into(),
                seq: i as i64,
                old: old.map(str::to_string),
                new: new.map(str::to_string),
            })
            .collect()
    }

    const CRASH: &str = "worker `w3` stopped sending heartbeats while it ran this flow run";

    fn crashed_and_retried() -> Vec<State> {
        states(&[
            ("Scheduled", "", None),
            ("Pending", "", Some("w3")),
            ("Running", "", Some("w3")),
            ("Crashed", CRASH, Some("w3")),
            ("Scheduled", "Retry 1/2 after a crash", None),
            ("Pending", "", Some("w1")),
            ("Running", "", Some("w1")),
            ("Completed", "", Some("w1")),
        ])
    }

    #[test]
    fn a_crash_then_a_retry_is_one_life() {
        let history = crashed_and_retried();
        let life = check_states(&history).unwrap();
        assert_eq!((life.end.as_str(), life.crashed_holders.clone()), ("Completed", vec!["w3".to_string()]));
        check_claims(&claims(&[(None, Some("w3")), (Some("w3"), None), (None, Some("w1"))]), &life).unwrap();
        assert_eq!(check_killed_worker(&history, "w3"), Ok(true));
        assert_eq!(check_killed_worker(&history, "w2"), Ok(false));
    }

    #[test]
    fn two_ends_two_executions_or_no_end_are_refused() {
        let twice =
            states(&[("Running", "", Some("w1")), ("Completed", "", Some("w1")), ("Completed", "", Some("w2"))]);
        assert!(check_states(&twice).unwrap_err().contains("after it ended"));
        let overlapping = states(&[("Running", "", Some("w1")), ("Running", "", Some("w2")), ("Completed", "", None)]);
        assert!(check_states(&overlapping).unwrap_err().contains("two executions at once"));
        let stuck = states(&[("Scheduled", "", None), ("Running", "", Some("w1"))]);
        assert!(check_states(&stuck).unwrap_err().contains("never ended"));
        let mut early = crashed_and_retried();
        early[6].time = early[3].time - chrono::Duration::seconds(1);
        assert!(check_states(&early).unwrap_err().contains("before the crash"));
        let retry_of_a_completed_run = states(&[
            ("Running", "", Some("w1")),
            ("Completed", "", Some("w1")),
            ("Scheduled", "Retry 1/2 after a crash", None),
        ]);
        assert!(check_states(&retry_of_a_completed_run).is_err());
    }

    #[test]
    fn a_report_applied_twice_is_told_apart_from_a_second_execution() {
        let mut history =
            states(&[("Running", "", Some("w1")), ("Running", "", Some("w1")), ("Completed", "", Some("w1"))]);
        history[1].time = history[0].time;
        let life = check_states(&history).unwrap();
        assert_eq!((life.end.as_str(), life.repeated.clone()), ("Completed", vec![1]));
        history[1].time += chrono::Duration::milliseconds(1);
        assert!(check_states(&history).unwrap_err().contains("two executions at once"));
    }

    #[test]
    fn a_holder_change_without_a_crash_is_refused() {
        let done = states(&[("Running", "", Some("w2")), ("Completed", "", Some("w2"))]);
        let life = check_states(&done).unwrap();
        let handed_over = claims(&[(None, Some("w1")), (Some("w1"), Some("w2"))]);
        assert!(check_claims(&handed_over, &life).unwrap_err().contains("changed from"));
        let let_go = claims(&[(None, Some("w1")), (Some("w1"), None), (None, Some("w2"))]);
        assert!(check_claims(&let_go, &life).unwrap_err().contains("crashed only 0 times"));
    }

    #[test]
    fn a_killed_workers_run_that_did_not_crash_is_refused() {
        let finished_by_another = states(&[("Running", "", Some("w3")), ("Completed", "", Some("w2"))]);
        assert!(check_killed_worker(&finished_by_another, "w3").unwrap_err().contains("instead of Crashed"));
        let left_running = states(&[("Scheduled", "", None), ("Running", "", Some("w3"))]);
        assert!(check_killed_worker(&left_running, "w3").unwrap_err().contains("nothing after"));
    }
}

/// A worker whose server is gone for longer than its event sender's retries
/// (about 11 s) but shorter than the heartbeat timeout (30 s by default)
/// keeps its runs: when the server returns, what the worker recorded
/// meanwhile (here: the run's end) must reach it, or the run stays `Running`
/// for ever, held by a worker that heartbeats and no longer runs it.
#[test]
fn a_run_ends_when_its_worker_outlives_a_long_server_outage() {
    use std::io::BufRead;
    use std::process::Stdio;
    use support::http::{get, post};
    use support::{Process, Sluice, eventually};

    let sluice = Sluice::new();
    let hold = guest("bench_flow");
    let deployed =
        sluice.run(&["deploy", hold.to_str().unwrap(), "--flow", "hold", "--name", "three", "--param", "ms=3000"]);
    assert!(deployed.status.success(), "{}", support::texts(&deployed).1);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let server_args = ["--workers", "0", "--port", &port];
    let start_server = || {
        let mut child = sluice
            .command()
            .arg("server")
            .args(server_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.next().unwrap().unwrap().contains(&format!("127.0.0.1:{port}")));
        std::thread::spawn(move || for _ in lines {});
        Process { child }
    };
    let mut server = start_server();
    let address = format!("127.0.0.1:{port}");
    support::http::use_token(&address, &sluice.admin_token());
    let mut worker = sluice
        .remote(&address)
        .args(["worker", "--api", &format!("http://{address}"), "--name", "w", "--heartbeat", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (said, worker_lines) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(worker.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = said.send(line);
        }
    });
    let _worker = Process { child: worker };

    let (status, run) = post(&address, "/api/v1/deployments/hold/three/runs", "");
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let state = |id: &str| get(&address, &format!("/api/v1/flow-runs/{id}")).1["flow_run"]["state"].clone();
    eventually(60, "the run to be running", || (state(&id) == "Running").then_some(()));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // The run ends on the worker 3 s later, while the server is down. The
    // outage lasts 20 of the worker's heartbeats: longer than the worker's
    // retries of what it has to send, shorter than the heartbeat timeout.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failed_heartbeats = 0;
    while failed_heartbeats < 20 {
        let left = deadline.checked_duration_since(Instant::now()).expect("20 failed heartbeats within 60 s");
        if worker_lines.recv_timeout(left).expect("the worker's stderr").contains("heartbeat failed") {
            failed_heartbeats += 1;
        }
    }
    let _server = start_server();
    let ended = (0..60).find_map(|_| {
        let now = state(&id);
        if now != "Running" {
            return Some(now);
        }
        std::thread::sleep(Duration::from_millis(500));
        None
    });
    assert_eq!(
        ended,
        Some(serde_json::json!("Completed")),
        "30 s after the server returned, the run is still Running: its end was dropped by the worker"
    );
}

/// A worker's report that reached the server, whose answer was lost on the
/// way back (the server died after committing it, or the connection broke),
/// is sent again; it must be recorded once.
#[test]
fn a_report_sent_again_after_its_answer_was_lost_is_recorded_once() {
    use support::http::{get, post};
    use support::{Sluice, eventually};

    let sluice = Sluice::new();
    let hold = guest("bench_flow");
    let deployed =
        sluice.run(&["deploy", hold.to_str().unwrap(), "--flow", "hold", "--name", "short", "--param", "ms=500"]);
    assert!(deployed.status.success(), "{}", support::texts(&deployed).1);
    let (_server, address) = sluice.server(&["--workers", "0"]);
    // The worker's first report of a run (its Pending and Running) goes through, its answer does not.
    let proxy = lossy_proxy::lose_one_answer(address.parse().unwrap(), "POST /api/v1/workers/w/events", "");
    let worker = sluice
        .remote(&address)
        .args(["worker", "--api", &format!("http://{proxy}"), "--name", "w"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _worker = support::Process { child: worker };
    let (status, run) = post(&address, "/api/v1/deployments/hold/short/runs", "");
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let done = eventually(60, "the run to complete", || {
        Some(get(&address, &format!("/api/v1/flow-runs/{id}")).1).filter(|r| r["flow_run"]["state"] == "Completed")
    });
    let states = support::states(&done);
    assert_eq!(states, ["Scheduled", "Pending", "Running", "Completed"], "the history of run {id}");
}

/// A claim the server committed but whose answer the worker never got (the
/// server died before answering, or the connection broke) hands runs to a
/// worker that does not know it has them: they must still run (be handed
/// out again, or crash and be retried), not wait for ever under a worker
/// that heartbeats.
#[test]
fn runs_claimed_by_a_request_whose_answer_was_lost_still_run() {
    use support::http::{get, post};
    use support::{Sluice, eventually};

    let sluice = Sluice::new();
    let hold = guest("bench_flow");
    let deploy = [hold.to_str().unwrap(), "--flow", "hold", "--name", "short", "--param", "ms=100"];
    let deployed = sluice.run(&[&["deploy"][..], &deploy, &["--retries", "1", "--retry-delay", "0"]].concat());
    assert!(deployed.status.success(), "{}", support::texts(&deployed).1);
    let (_server, address) = sluice.server(&["--workers", "0", "--heartbeat-timeout", "5"]);
    // The first claim that hands out a run goes through; its answer does not.
    let proxy = lossy_proxy::lose_one_answer(address.parse().unwrap(), "POST /api/v1/workers/w/claim", "\"artifact\"");
    let worker = sluice
        .remote(&address)
        .args(["worker", "--api", &format!("http://{proxy}"), "--name", "w", "--heartbeat", "1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _worker = support::Process { child: worker };
    let (status, run) = post(&address, "/api/v1/deployments/hold/short/runs", "");
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let run = |id: &str| get(&address, &format!("/api/v1/flow-runs/{id}")).1["flow_run"].clone();
    eventually(30, "the run to be claimed", || run(&id)["claimed_by"].is_string().then_some(()));
    let ended = (0..90).find_map(|_| {
        let now = run(&id);
        if !now["ended"].is_null() {
            return Some(now["state"].clone());
        }
        std::thread::sleep(Duration::from_millis(500));
        None
    });
    assert_eq!(
        ended,
        Some(serde_json::json!("Completed")),
        "45 s later, run {id} is still {}, claimed by {}: taken by a claim whose answer was lost, it never ran",
        run(&id)["state"],
        run(&id)["claimed_by"]
    );
}
