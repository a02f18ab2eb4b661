//! What only the PostgreSQL store has to prove (the shared contract is in
//! `store/suite.rs`): bad URLs and servers fail with a clear message, a
//! newer schema is refused, concurrent claimers never take a run twice,
//! and work announced through one store wakes waiters of another.

use super::PgStore;
use crate::core::ids::RunId;
use crate::core::record::{Event, FlowRunRecord, Recorder, RunKind, StateRecord};
use crate::core::state::StateType;
use crate::core::tenant::{Tenant, TenantPolicy};
use crate::store::test_cluster::Cluster;
use crate::store::{Backend, Claim, StateStore};
use chrono::Utc;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

fn open_error(url: &str) -> String {
    match PgStore::open(url) {
        Ok(_) => panic!("{url} opened"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn an_unreachable_server_is_named_with_what_failed() {
    // Port 1 on loopback: nothing listens there, so the connection is refused.
    let message = open_error("postgres://sluice:hunter2@127.0.0.1:1/sluice");
    assert!(message.contains("127.0.0.1:1/sluice"), "{message}");
    assert!(message.contains("cannot connect"), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(!message.contains("hunter2"), "the password leaked: {message}");
}

#[test]
fn a_url_that_is_not_postgres_or_not_a_url_is_refused_with_what_to_do() {
    let message = open_error("mysql://root:hunter2@127.0.0.1/db");
    assert!(message.contains("must be a postgres://"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    let message = open_error("postgres://sluice@127.0.0.1:notaport/db");
    assert!(message.contains("not a valid PostgreSQL URL"), "{message}");
}

#[test]
fn a_missing_database_is_named_with_the_servers_reason() {
    let cluster = Cluster::shared();
    let message = open_error(&cluster.url("no_such_database"));
    assert!(message.contains("/no_such_database"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn a_database_migrated_by_a_newer_sluice_is_refused() {
    let url = Cluster::shared().new_database();
    drop(PgStore::open(&url).unwrap());
    assert_eq!(Cluster::shared().psql(&url, "SELECT version FROM sluice_schema"), super::schema::latest().to_string());
    Cluster::shared().psql(&url, "UPDATE sluice_schema SET version = 999");
    let message = open_error(&url);
    assert!(message.contains("schema version 999"), "{message}");
    assert!(message.contains("newer"), "{message}");
}

fn due_run(tenant: &str) -> [Event; 2] {
    let id = RunId::new();
    let now = Utc::now() - chrono::Duration::seconds(1);
    [
        Event::FlowRunCreated(FlowRunRecord {
            id,
            name: format!("run-{id}"),
            flow: "hello".into(),
            parent: None,
            deployment: None,
            parameters: json!({}),
            artifact_digest: "sha256:00".into(),
            created: now,
            scheduled: Some(now),
            tenant: Some(tenant.into()),
            call: None,
        }),
        Event::State(StateRecord {
            run: id,
            kind: RunKind::Flow,
            state: StateType::Scheduled,
            message: None,
            attempt: 1,
            result: None,
            time: now,
        }),
    ]
}

#[test]
fn concurrent_claimers_on_several_stores_take_each_run_once_within_the_tenant_limit() {
    let url = Cluster::shared().new_database();
    let stores: Vec<PgStore> = (0..3).map(|_| PgStore::open(&url).unwrap()).collect();
    let limited = TenantPolicy { max_concurrent_runs: Some(150), ..TenantPolicy::default() };
    let roomy = TenantPolicy { max_concurrent_runs: Some(1000), ..TenantPolicy::default() };
    for (name, policy) in [("a", limited), ("b", roomy)] {
        stores[0].create_tenant(&Tenant { name: name.into(), policy, created: Utc::now() }).unwrap();
    }
    for i in 0..400 {
        for event in due_run(if i % 2 == 0 { "a" } else { "b" }) {
            stores[0].record(&event);
        }
    }
    super::conn::wait(stores[0].flush());
    // Six claimers, two per store (as on three servers), starting together and
    // racing until nothing more can be taken. A claimer that finds a tenant
    // being claimed by another skips it this round; like a worker, it waits a
    // little and asks again, and gives up only after 100 ms of empty rounds.
    let start = std::sync::Barrier::new(6);
    let taken: Vec<Vec<(String, String)>> = std::thread::scope(|scope| {
        let claimers: Vec<_> = (0..6)
            .map(|n| {
                let store = &stores[n % 3];
                let start = &start;
                scope.spawn(move || {
                    let taker = format!("worker-{n}");
                    let mut mine = Vec::new();
                    let mut empty_rounds = 0;
                    start.wait();
                    while empty_rounds < 20 {
                        let claim = Claim {
                            tenant: None,
                            now: Utc::now(),
                            pool: Some("default"),
                            queues: &[],
                            deployment: None,
                            limit: 7,
                            taker: &taker,
                        };
                        let runs = store.claim_due(&claim).unwrap();
                        empty_rounds = if runs.is_empty() { empty_rounds + 1 } else { 0 };
                        if runs.is_empty() {
                            std::thread::sleep(std::time::Duration::from_millis(5));
                        }
                        mine.extend(runs.into_iter().map(|run| (run.id, run.tenant)));
                    }
                    mine
                })
            })
            .collect();
        claimers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let all: Vec<&(String, String)> = taken.iter().flatten().collect();
    let distinct: HashSet<&String> = all.iter().map(|(id, _)| id).collect();
    assert_eq!(distinct.len(), all.len(), "a run was taken twice");
    let of = |tenant: &str| all.iter().filter(|(_, t)| t == tenant).count();
    assert_eq!(of("a"), 150, "tenant a's limit of 150 running runs holds across claimers");
    assert_eq!(of("b"), 200, "every run of b, which has room, is taken");
    assert!(taken.iter().filter(|mine| !mine.is_empty()).count() >= 2, "the claimers shared the work");
}

#[test]
fn work_announced_through_one_store_wakes_a_waiter_of_another_within_milliseconds() {
    let url = Cluster::shared().new_database();
    let (announcer, listener) = (PgStore::open(&url).unwrap(), PgStore::open(&url).unwrap());
    let woken = Arc::new(Notify::new());
    Backend::on_work_announced(&listener, woken.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // The listener connects in the background: announce until the first one is heard.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = woken.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            announcer.announce_work();
            if tokio::time::timeout(Duration::from_millis(200), notified).await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "no announcement was ever heard");
        }
        let mut latencies = Vec::new();
        for _ in 0..20 {
            let notified = woken.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            for event in due_run("default") {
                announcer.record(&event);
            }
            let start = Instant::now();
            announcer.announce_work();
            tokio::time::timeout(Duration::from_secs(5), notified).await.expect("woken");
            latencies.push(start.elapsed());
            // Woken means committed: the run is there to take.
            let claim = Claim {
                tenant: None,
                now: Utc::now(),
                pool: Some("default"),
                queues: &[],
                deployment: None,
                limit: 10,
                taker: "remote",
            };
            assert_eq!(
                listener.claim_due(&claim).unwrap().len(),
                1,
                "the announced run is visible when the wake-up arrives"
            );
        }
        latencies.sort();
        let median = latencies[latencies.len() / 2];
        eprintln!("announcement to wake-up: median {median:?}, max {:?}", latencies.last().unwrap());
        assert!(median < Duration::from_millis(50), "median wake-up took {median:?}");
    });
}

#[test]
fn a_store_does_not_wake_its_own_waiters_twice() {
    let url = Cluster::shared().new_database();
    let (store, other) = (PgStore::open(&url).unwrap(), PgStore::open(&url).unwrap());
    let (own, theirs) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    Backend::on_work_announced(&store, own.clone());
    Backend::on_work_announced(&other, theirs.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut own_wakes = 0;
        loop {
            let (a, b) = (own.notified(), theirs.notified());
            tokio::pin!(a, b);
            a.as_mut().enable();
            b.as_mut().enable();
            store.announce_work();
            if tokio::time::timeout(Duration::from_millis(200), b).await.is_ok() {
                // The other store heard it; ours must not have been woken by its own announcement.
                if tokio::time::timeout(Duration::from_millis(100), a).await.is_ok() {
                    own_wakes += 1;
                }
                break;
            }
            assert!(Instant::now() < deadline, "no announcement was ever heard");
        }
        assert_eq!(own_wakes, 0, "a store's own announcement came back to it");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_a_multi_threaded_runtime_neither_panic_nor_deadlock() {
    let url = Cluster::shared().new_database();
    let store = Arc::new(PgStore::open(&url).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            for event in due_run("default") {
                store.record(&event);
            }
            store.flush().await;
            store.heartbeat(&format!("w{n}"), Utc::now()).unwrap();
            store.flow_runs(&crate::store::RunFilter { limit: 1000, ..Default::default() }).unwrap().len()
        });
    }
    while let Some(seen) = tasks.join_next().await {
        assert!(seen.unwrap() >= 1);
    }
    assert_eq!(store.flow_runs(&crate::store::RunFilter { limit: 1000, ..Default::default() }).unwrap().len(), 16);
}
