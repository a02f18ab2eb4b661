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
//! faults, each pinned by a test of its own in `tests/worker_faults.rs`.
//! Then every
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

    // Mid-way: a third of the runs acknowledged and w3 running some. It is
    // frozen before its runs are counted: a run is short, and one that ended
    // between the count and the kill left the kill nothing to crash.
    let w3 = workers["w3"].child.id().to_string();
    let signal = |name: &str| assert!(std::process::Command::new("kill").args([name, &w3]).status().unwrap().success());
    wait_for(180, "a third of the runs acknowledged and w3 frozen running two", || {
        if load.acknowledged() < RUNS / 3 {
            return None;
        }
        signal("-STOP");
        // Reports it sent before it froze land first.
        std::thread::sleep(Duration::from_millis(300));
        let running = "SELECT count(*) FROM flow_runs WHERE claimed_by = 'w3' AND state = 'Running'";
        let holding = count(cluster, &db, running) >= 2;
        if !holding {
            signal("-CONT");
        }
        holding.then_some(())
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
        let life =
            check_states(history, run.parent.is_some()).unwrap_or_else(|e| panic!("run {}: {e}\n{history:#?}", run.id));
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
