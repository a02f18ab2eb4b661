//! One test suite for every `StateStore` backend: each test runs its body
//! once per backend that `backends()` returns, SQLite and PostgreSQL (a
//! fresh database on this test process's own PostgreSQL server, see
//! `tests/support/pg_cluster.rs`), so a test added here covers both.

use super::*;
use crate::core::describe::ComponentDescription;
use crate::core::ids::RunId;
use crate::core::record::{Event, FlowRunRecord, LogRecord, RunKind, StateRecord, TaskRunRecord};
use crate::core::tenant::{Role, Tenant, TenantPolicy, TokenInfo};
use crate::store::Claim;
use serde_json::json;
use std::sync::Arc;

/// Opens (again) one backend's store.
type Open = Box<dyn Fn() -> Box<dyn Backend>>;

fn backends() -> Vec<(tempfile::TempDir, Open)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let url = super::test_cluster::Cluster::shared().new_database();
    // Which backend a failure happened on: the harness shows a failing test's output.
    let sqlite: Open = Box::new(move || {
        eprintln!("store suite: on SQLite");
        Box::new(SqliteStore::open(&path).unwrap())
    });
    let postgres: Open = Box::new(move || {
        eprintln!("store suite: on PostgreSQL");
        Box::new(PgStore::open(&url).unwrap())
    });
    vec![(dir, sqlite), (tempfile::tempdir().unwrap(), postgres)]
}

fn flow_run(id: RunId, name: &str) -> Event {
    Event::FlowRunCreated(FlowRunRecord {
        id,
        name: name.into(),
        flow: "hello".into(),
        parent: None,
        deployment: Some("hello/leo".into()),
        parameters: json!({"name": "Leo"}),
        artifact_digest: "sha256:00".into(),
        created: Utc::now(),
        scheduled: None,
        tenant: None,
        call: None,
    })
}

/// A deployment `hello/<name>` of the default tenant with every setting at its default.
fn deployment(name: &str, now: chrono::DateTime<Utc>) -> Deployment {
    Deployment {
        tenant: "default".into(),
        flow: "hello".into(),
        name: name.into(),
        artifact: "sha256:00".into(),
        parameters: serde_json::Map::new(),
        description: None,
        version: None,
        tags: Vec::new(),
        schedule: None,
        paused: false,
        pool: None,
        queue: None,
        limits: Default::default(),
        grants: Default::default(),
        served: false,
        created: now,
        updated: now,
    }
}

fn state(run: RunId, kind: RunKind, state: StateType, result: Option<&str>) -> Event {
    Event::State(StateRecord {
        run,
        kind,
        state,
        message: None,
        attempt: 1,
        result: result.map(Arc::from),
        time: Utc::now(),
    })
}

/// Task run `id` of `flow_run`, running `task`, created now.
fn task_run(id: RunId, flow_run: RunId, task: &str, name: &str) -> Event {
    Event::TaskRunCreated(TaskRunRecord {
        id,
        flow_run,
        task: task.into(),
        name: name.into(),
        input: "{}".into(),
        created: Utc::now(),
        call: None,
    })
}

#[tokio::test]
async fn a_recorded_run_reads_back_with_its_history_tasks_and_logs() {
    for (_dir, open) in backends() {
        let store = open();
        let (run, task) = (RunId::new(), RunId::new());
        store.record(&flow_run(run, "brave-otter"));
        for s in [StateType::Pending, StateType::Running] {
            store.record(&state(run, RunKind::Flow, s, None));
        }
        store.record(&task_run(task, run, "say_hello", "say_hello-0"));
        store.record(&state(task, RunKind::Task, StateType::Running, None));
        store.record(&Event::Log(LogRecord {
            flow_run: run,
            task_run: Some(task),
            level: LogLevel::Info,
            message: "Hello Leo!".into(),
            time: Utc::now(),
        }));
        store.record(&state(task, RunKind::Task, StateType::Completed, Some("null")));
        store.record(&state(run, RunKind::Flow, StateType::Completed, Some("\"done\"")));
        store.flush().await;

        let row = store.flow_run(None, "brave-otter").unwrap().expect("found by name");
        assert_eq!(row.id, run.to_string());
        assert_eq!(row.state, Some(StateType::Completed));
        assert_eq!(row.result, Some(json!("done")));
        assert!(row.started.is_some() && row.ended.is_some());
        let history: Vec<StateType> = store.states(&row.id).unwrap().into_iter().map(|s| s.state).collect();
        assert_eq!(history, [StateType::Pending, StateType::Running, StateType::Completed]);
        let tasks = store.task_runs(&row.id).unwrap();
        assert_eq!(tasks.len(), 1);
        assert_eq!((tasks[0].name.as_str(), tasks[0].state), ("say_hello-0", Some(StateType::Completed)));
        let logs = store.logs(&row.id, None).unwrap();
        assert_eq!((logs[0].run_name.as_str(), logs[0].message.as_str()), ("say_hello-0", "Hello Leo!"));
        let listed =
            store.flow_runs(&RunFilter { state: Some(StateType::Completed), limit: 10, ..RunFilter::default() });
        assert_eq!(listed.unwrap().len(), 1);
        let none = store.flow_runs(&RunFilter { state: Some(StateType::Failed), limit: 10, ..RunFilter::default() });
        assert!(none.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_task_run_ended_commits_after_its_creation_keeps_every_state_and_its_end() {
    for (_dir, open) in backends() {
        let store = open();
        let (run, task) = (RunId::new(), RunId::new());
        store.record(&flow_run(run, "patient-crane"));
        store.record(&task_run(task, run, "add", "add-0"));
        store.record(&state(task, RunKind::Task, StateType::Pending, None));
        store.flush().await;
        // Later commits, as a parallel map's: the run's states after its creation.
        store.record(&state(task, RunKind::Task, StateType::Running, None));
        store.record(&state(task, RunKind::Task, StateType::Completed, Some("7")));
        let Event::State(mut late) = state(task, RunKind::Task, StateType::Running, None) else { unreachable!() };
        late.attempt = 2;
        store.record(&Event::State(late));
        store.flush().await;
        store.record(&state(task, RunKind::Task, StateType::Crashed, None));
        store.flush().await;

        let tasks = store.task_runs(&run.to_string()).unwrap();
        assert_eq!(tasks[0].state, Some(StateType::Completed), "states after the end are dropped");
        assert_eq!(tasks[0].result, Some(json!(7)));
        assert_eq!(tasks[0].attempts, 1, "the dropped state's attempt is not counted");
        assert!(tasks[0].ended.is_some());
        let history: Vec<StateType> = store.states(&task.to_string()).unwrap().into_iter().map(|s| s.state).collect();
        assert_eq!(history, [StateType::Pending, StateType::Running, StateType::Completed]);
    }
}

#[tokio::test]
async fn records_survive_reopening_the_database() {
    for (_dir, open) in backends() {
        let run = RunId::new();
        {
            let store = open();
            store.record(&flow_run(run, "steady-heron"));
            store.record(&state(run, RunKind::Flow, StateType::Pending, None));
            store.flush().await;
        }
        let store = open();
        assert_eq!(store.flow_run(None, &run.to_string()).unwrap().unwrap().state, Some(StateType::Pending));
    }
}

#[test]
fn deployments_upsert_reports_created_updated_unchanged() {
    for (_dir, open) in backends() {
        let store = open();
        let now = Utc::now();
        let mut deployment = Deployment { tags: vec!["demo".into()], ..deployment("leo", now) };
        assert_eq!(store.upsert_deployment(&deployment).unwrap(), Change::Created);
        deployment.updated = Utc::now();
        assert_eq!(store.upsert_deployment(&deployment).unwrap(), Change::Unchanged);
        deployment.paused = true;
        assert_eq!(store.upsert_deployment(&deployment).unwrap(), Change::Updated);
        let stored = store.deployment("default", "hello", "leo").unwrap().unwrap();
        assert!(stored.paused);
        assert_eq!(stored.created, store.deployments(None).unwrap()[0].created);
        assert!(store.delete_deployment("default", "hello", "leo").unwrap());
        assert!(!store.delete_deployment("default", "hello", "leo").unwrap());
        assert!(store.deployment("default", "hello", "leo").unwrap().is_none());
    }
}

#[test]
fn artifacts_are_recorded_once() {
    for (_dir, open) in backends() {
        let store = open();
        let meta = ArtifactMeta {
            digest: "sha256:ab".into(),
            size: 3,
            description: ComponentDescription { version: "1".into(), flows: vec![], tasks: vec![] },
            imports: vec!["sluice:flow/host@0.1.0".into()],
            pushed_at: Utc::now(),
        };
        assert!(store.save_artifact("a", &meta).unwrap());
        assert!(!store.save_artifact("a", &meta).unwrap());
        assert_eq!(store.artifact(Some("a"), "sha256:ab").unwrap().unwrap().imports, meta.imports);
        assert_eq!(store.artifacts(Some("a")).unwrap().len(), 1);
        assert!(store.artifact(Some("a"), "sha256:cd").unwrap().is_none());
        // The same bytes pushed by another tenant: one object, two owners.
        assert!(store.artifact(Some("b"), "sha256:ab").unwrap().is_none(), "b has not pushed it");
        assert!(store.artifacts(Some("b")).unwrap().is_empty());
        assert!(store.save_artifact("b", &meta).unwrap(), "new to b");
        assert!(store.artifact(Some("b"), "sha256:ab").unwrap().is_some());
        assert_eq!(store.artifacts(None).unwrap().len(), 1);
    }
}

#[tokio::test]
async fn cached_results_are_shared_within_a_tenant_and_expire() {
    for (_dir, open) in backends() {
        let now = Utc::now();
        {
            let store = open();
            store.put("acme", "k", Arc::from("42"), None);
            store.put("acme", "old", Arc::from("1"), Some(now + chrono::Duration::seconds(1)));
            assert_eq!(store.get("acme", "k", now).as_deref(), Some("42"), "visible before the commit");
            assert_eq!(store.get("globex", "k", now), None, "not to another tenant, even before the commit");
            store.flush().await;
        }
        let store = open();
        assert_eq!(store.get("acme", "k", now).as_deref(), Some("42"), "visible to a later process");
        assert_eq!(store.get("globex", "k", now), None, "never to another tenant");
        assert_eq!(store.get("acme", "old", now).as_deref(), Some("1"));
        assert_eq!(store.get("acme", "old", now + chrono::Duration::seconds(2)), None);
        assert_eq!(store.get("acme", "missing", now), None);
    }
}

fn due_run(tenant: &str, scheduled: chrono::DateTime<Utc>) -> Vec<Event> {
    let id = RunId::new();
    vec![
        Event::FlowRunCreated(FlowRunRecord {
            id,
            name: format!("run-{id}"),
            flow: "hello".into(),
            parent: None,
            deployment: None,
            parameters: json!({}),
            artifact_digest: "sha256:00".into(),
            created: scheduled,
            scheduled: Some(scheduled),
            tenant: Some(tenant.into()),
            call: None,
        }),
        state(id, RunKind::Flow, StateType::Scheduled, None),
    ]
}

#[tokio::test]
async fn a_served_deployments_runs_go_only_to_the_claim_naming_it() {
    for (_dir, open) in backends() {
        let store = open();
        let now = Utc::now();
        let deployment = Deployment { served: true, ..deployment("served", now) };
        store.upsert_deployment(&deployment).unwrap();
        let mut events = due_run("default", now - chrono::Duration::seconds(1));
        if let Event::FlowRunCreated(run) = &mut events[0] {
            run.deployment = Some("hello/served".into());
        }
        for event in &events {
            store.record(event);
        }
        store.flush().await;
        let by_pool =
            Claim { tenant: None, now, pool: Some("default"), queues: &[], deployment: None, limit: 10, taker: "w" };
        assert!(store.claim_due(&by_pool).unwrap().is_empty(), "no pool's worker takes a served deployment's run");
        let serving = Claim { tenant: Some("default"), pool: None, deployment: Some("hello/served"), ..by_pool };
        assert_eq!(store.claim_due(&serving).unwrap().len(), 1, "its serving process does");
    }
}

#[test]
fn the_scheduler_makes_no_runs_for_a_deployment_paused_or_changed_since_it_read_it() {
    for (_dir, open) in backends() {
        let store = open();
        let now = Utc::now();
        let read = deployment("every", now);
        store.upsert_deployment(&read).unwrap();
        let times: Vec<_> = (1..=3).map(|i| now + chrono::Duration::minutes(i)).collect();
        let parameters = json!({});
        let slots = |deployment| ScheduledRuns { deployment, parameters: &parameters, times: &times, now };
        // Paused after the scheduler read it: its future runs were removed; none may come back.
        let paused = Deployment { paused: true, updated: now + chrono::Duration::seconds(1), ..read.clone() };
        store.upsert_deployment(&paused).unwrap();
        assert_eq!(store.schedule_runs(&slots(&read)).unwrap(), 0);
        // Resumed: what the scheduler reads now is what is stored, and its runs are made.
        let resumed = Deployment { paused: false, updated: now + chrono::Duration::seconds(2), ..read.clone() };
        store.upsert_deployment(&resumed).unwrap();
        assert_eq!(store.schedule_runs(&slots(&paused)).unwrap(), 0, "read before it was resumed");
        let stored = store.deployment("default", "hello", "every").unwrap().unwrap();
        assert_eq!(store.schedule_runs(&slots(&stored)).unwrap(), 3);
    }
}

#[tokio::test]
async fn a_run_behind_a_long_line_of_runs_waiting_on_their_limit_is_still_taken() {
    for (_dir, open) in backends() {
        let store = open();
        let now = Utc::now();
        let limited = |name: &str, concurrency| Deployment {
            limits: crate::core::deployment::Limits { concurrency, ..Default::default() },
            ..deployment(name, now)
        };
        store.upsert_deployment(&limited("one-at-a-time", Some(1))).unwrap();
        store.upsert_deployment(&limited("free", None)).unwrap();
        // More runs of the limited deployment than a claim first reads, all due before the free one.
        let queued = |name: &str, age: i64| {
            let mut events = due_run("default", now - chrono::Duration::seconds(age));
            if let Event::FlowRunCreated(run) = &mut events[0] {
                run.deployment = Some(format!("hello/{name}"));
            }
            events
        };
        for age in 0..100 {
            for event in queued("one-at-a-time", 1_000 - age) {
                store.record(&event);
            }
        }
        let free: Vec<Event> = queued("free", 1);
        let Event::FlowRunCreated(free_run) = &free[0] else { unreachable!() };
        let free_id = free_run.id.to_string();
        for event in &free {
            store.record(event);
        }
        store.flush().await;
        let claim =
            Claim { tenant: None, now, pool: Some("default"), queues: &[], deployment: None, limit: 1, taker: "w" };
        let first = store.claim_due(&claim).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].deployment.as_deref(), Some("hello/one-at-a-time"), "the oldest due run goes first");
        // Every other run of that deployment now waits for its one slot: the free run behind them goes.
        let second = store.claim_due(&claim).unwrap();
        assert_eq!(second.iter().map(|run| run.id.as_str()).collect::<Vec<_>>(), [free_id.as_str()]);
        assert!(store.claim_due(&claim).unwrap().is_empty(), "nothing else may start");
    }
}

#[tokio::test]
async fn claims_interleave_tenants_so_a_backlog_does_not_starve_another() {
    for (_dir, open) in backends() {
        let store = open();
        let now = Utc::now();
        for name in ["big", "small"] {
            let tenant = Tenant { name: name.into(), policy: TenantPolicy::default(), created: now };
            assert!(store.create_tenant(&tenant).unwrap());
        }
        // The big tenant queued 10,000 runs long before the small one queued one.
        for i in 0..10_000 {
            for event in due_run("big", now - chrono::Duration::seconds(20_000 - i)) {
                store.record(&event);
            }
        }
        for event in due_run("small", now - chrono::Duration::seconds(1)) {
            store.record(&event);
        }
        store.flush().await;
        let claim = |limit| Claim {
            tenant: None,
            now,
            pool: Some("default"),
            queues: &[],
            deployment: None,
            limit,
            taker: "w",
        };
        let first = store.claim_due(&claim(2)).unwrap();
        let mut tenants: Vec<&str> = first.iter().map(|run| run.tenant.as_str()).collect();
        tenants.sort();
        assert_eq!(tenants, ["big", "small"], "one slot each, not both to the backlog");
        assert_eq!(store.running_runs("small").unwrap().len(), 1, "held and not ended: running");
        assert!(store.running_runs("nobody").unwrap().is_empty());
        let next = store.claim_due(&claim(3)).unwrap();
        assert!(next.iter().all(|run| run.tenant == "big"), "only big has runs left");
        assert_eq!(next.len(), 3);

        // A tenant at its concurrency quota waits; the others go on.
        let capped = TenantPolicy { max_concurrent_runs: Some(4), ..TenantPolicy::default() };
        assert!(store.set_tenant_policy("big", &capped).unwrap());
        let more = store.claim_due(&claim(10)).unwrap();
        assert_eq!(more.len(), 0, "big already runs 4 of its 4");
        // A claim scoped to one tenant never sees another's runs.
        let scoped = Claim { tenant: Some("small"), ..claim(10) };
        assert!(store.claim_due(&scoped).unwrap().is_empty());
    }
}

#[test]
fn tokens_are_kept_hashed_and_revocable_within_their_tenant() {
    for (_dir, open) in backends() {
        let store = open();
        let now = Utc::now();
        let info = TokenInfo {
            id: "0123456789ab".into(),
            tenant: "default".into(),
            role: Role::Viewer,
            name: None,
            created: now,
            expires: None,
            revoked: None,
        };
        store.create_token(&info, &[7; 32]).unwrap();
        let (stored, hash) = store.token("0123456789ab").unwrap().unwrap();
        assert_eq!((stored.tenant.as_str(), stored.role, stored.revoked), ("default", Role::Viewer, None));
        assert_eq!(hash, vec![7; 32]);
        assert!(!store.revoke_token(Some("other"), "0123456789ab", now).unwrap(), "not other's to revoke");
        assert!(store.revoke_token(Some("default"), "0123456789ab", now).unwrap());
        assert!(store.token("0123456789ab").unwrap().unwrap().0.revoked.is_some());
        assert!(!store.revoke_token(None, "0123456789ab", now).unwrap(), "already revoked");
    }
}

#[tokio::test]
async fn a_crashed_run_ends_its_unfinished_subflows_and_task_runs_crashed() {
    for (_dir, open) in backends() {
        let store = open();
        let (root, subflow, done, running, nested) =
            (RunId::new(), RunId::new(), RunId::new(), RunId::new(), RunId::new());
        store.record(&flow_run(root, "root-run"));
        store.record(&state(root, RunKind::Flow, StateType::Scheduled, None));
        store.flush().await;
        assert!(store.claim_run(&root.to_string(), "w").unwrap());
        store.record(&state(root, RunKind::Flow, StateType::Running, None));
        let Event::FlowRunCreated(mut child) = flow_run(subflow, "child-run") else { unreachable!() };
        child.parent = Some(root);
        store.record(&Event::FlowRunCreated(child));
        store.record(&state(subflow, RunKind::Flow, StateType::Running, None));
        for (task, flow) in [(done, root), (running, root), (nested, subflow)] {
            store.record(&task_run(task, flow, "work", &format!("work-{task}")));
            store.record(&state(task, RunKind::Task, StateType::Running, None));
        }
        store.record(&state(done, RunKind::Task, StateType::Completed, Some("1")));
        store.flush().await;
        let seen = Utc::now();
        store.heartbeat("w", seen).unwrap();

        let crashed = store.crash_orphans(seen + chrono::Duration::seconds(1), seen).unwrap();
        assert_eq!(crashed, [root.to_string()]);
        let task_state = |id: RunId| {
            store
                .task_runs(&if id == nested { subflow } else { root }.to_string())
                .unwrap()
                .into_iter()
                .find(|t| t.id == id.to_string())
                .unwrap()
        };
        assert_eq!(task_state(done).state, Some(StateType::Completed), "a finished task keeps its end");
        for id in [running, nested] {
            let task = task_state(id);
            assert_eq!(task.state, Some(StateType::Crashed), "{task:?}");
            assert!(task.ended.is_some());
            assert_eq!(store.states(&id.to_string()).unwrap().last().unwrap().state, StateType::Crashed);
        }
        let child = store.flow_run(None, &subflow.to_string()).unwrap().unwrap();
        assert_eq!((child.state, child.ended.is_some()), (Some(StateType::Crashed), true));
        assert!(store.run_standing(RunKind::Task, &running.to_string()).unwrap().unwrap().ended);
    }
}

#[test]
fn a_lease_has_one_holder_until_it_expires_then_another_takes_it() {
    for (_dir, open) in backends() {
        let store = open();
        let now = Utc::now();
        let ttl = chrono::Duration::seconds(5);
        assert!(store.hold_lease("housekeeping", "a", now, now + ttl).unwrap());
        assert!(!store.hold_lease("housekeeping", "b", now, now + ttl).unwrap(), "a holds it");
        assert!(store.hold_lease("other-work", "b", now, now + ttl).unwrap(), "leases are per name");
        let later = now + chrono::Duration::seconds(3);
        assert!(store.hold_lease("housekeeping", "a", later, later + ttl).unwrap(), "the holder renews");
        let past_first_term = now + chrono::Duration::seconds(6);
        assert!(!store.hold_lease("housekeeping", "b", past_first_term, past_first_term + ttl).unwrap(), "renewed");
        let expired = later + ttl + chrono::Duration::milliseconds(1);
        assert!(store.hold_lease("housekeeping", "b", expired, expired + ttl).unwrap(), "a stopped renewing");
        assert!(!store.hold_lease("housekeeping", "a", expired, expired + ttl).unwrap(), "b holds it now");
    }
}

#[tokio::test]
async fn the_journal_holds_every_positioned_call_of_a_run_tree_and_a_retry_reopens_its_subflow() {
    use crate::core::journal::{CallPosition, input_digest};
    for (_dir, open) in backends() {
        let store = open();
        let (root, subflow, first, second, nested, unpositioned) =
            (RunId::new(), RunId::new(), RunId::new(), RunId::new(), RunId::new(), RunId::new());
        let at = |position, flow_attempt| Some(CallPosition { position, batch: position, flow_attempt });
        store.record(&flow_run(root, "journal-root"));
        store.record(&state(root, RunKind::Flow, StateType::Scheduled, None));
        store.flush().await;
        assert!(store.claim_run(&root.to_string(), "w").unwrap());
        let task = |id: RunId, flow: RunId, input: &str, call| TaskRunRecord {
            id,
            flow_run: flow,
            task: "step".into(),
            name: format!("step-{id}"),
            input: input.into(),
            created: Utc::now(),
            call,
        };
        store.record(&Event::TaskRunCreated(task(first, root, "{\"i\":0}", at(0, 1))));
        store.record(&state(first, RunKind::Task, StateType::Completed, Some("0")));
        store.record(&Event::TaskRunCreated(task(second, root, "{\"i\":1}", at(1, 1))));
        store.record(&state(second, RunKind::Task, StateType::Failed, None));
        store.record(&Event::TaskRunCreated(task(unpositioned, root, "{}", None)));
        let Event::FlowRunCreated(mut child) = flow_run(subflow, "journal-child") else { unreachable!() };
        (child.parent, child.call, child.parameters) = (Some(root), at(2, 1), json!({"b": 1, "a": [2]}));
        store.record(&Event::FlowRunCreated(child.clone()));
        store.record(&Event::TaskRunCreated(task(nested, subflow, "{\"i\":100}", at(0, 1))));
        store.record(&state(nested, RunKind::Task, StateType::Completed, Some("200")));
        store.record(&state(subflow, RunKind::Flow, StateType::Failed, None));
        store.record(&state(root, RunKind::Flow, StateType::Failed, None));
        store.flush().await;

        let mut rows = store.journal(&root.to_string()).unwrap();
        rows.sort_by_key(|row| (row.flow_run.clone(), row.call.position));
        assert_eq!(rows.len(), 4, "positioned calls of the root and its subflow: {rows:?}");
        let row = |id: RunId| rows.iter().find(|row| row.run == id.to_string()).unwrap();
        assert_eq!(row(first).result.as_deref(), Some("0"));
        assert_eq!(row(first).digest, input_digest(RunKind::Task, "{\"i\":0}"));
        assert_eq!(row(second).state, Some(StateType::Failed));
        assert_eq!(row(nested).flow_run, subflow.to_string());
        let sub = row(subflow);
        assert_eq!((sub.kind, sub.flow_run.clone(), sub.call.position), (RunKind::Flow, root.to_string(), 2));
        assert_eq!(sub.digest, input_digest(RunKind::Flow, "{\"a\":[2],\"b\":1}"), "parameters compare as JSON");

        // A retry: the root's next attempt, and its subflow resumed under its id.
        store.reschedule(&root.to_string(), Utc::now(), "retry").unwrap();
        assert_eq!(store.flow_run(None, &root.to_string()).unwrap().unwrap().attempt, 2);
        store.record(&Event::FlowRunCreated(child.clone()));
        store.flush().await;
        assert!(store.flow_run(None, &subflow.to_string()).unwrap().unwrap().ended.is_some(), "same attempt: kept");
        child.call = at(2, 2);
        store.record(&Event::FlowRunCreated(child));
        store.record(&state(subflow, RunKind::Flow, StateType::Running, None));
        store.flush().await;
        let reopened = store.flow_run(None, &subflow.to_string()).unwrap().unwrap();
        assert_eq!((reopened.state, reopened.ended), (Some(StateType::Running), None), "a later attempt reopens it");

        // A worker that starts again holds nothing: its runs end Crashed at once.
        assert!(store.claim_run(&root.to_string(), "restarted").unwrap());
        store.record(&state(root, RunKind::Flow, StateType::Running, None));
        store.flush().await;
        assert_eq!(store.crash_held_by("restarted", Utc::now()).unwrap(), [root.to_string()]);
        let crashed = store.flow_run(None, &root.to_string()).unwrap().unwrap();
        assert_eq!(crashed.state, Some(StateType::Crashed));
        assert!(crashed.message.unwrap().contains("started again"));
        assert_eq!(store.flow_run(None, &subflow.to_string()).unwrap().unwrap().state, Some(StateType::Crashed));
    }
}

#[tokio::test]
async fn runs_a_worker_never_heard_it_took_go_back_to_the_queue_and_a_resent_state_is_known() {
    for (_dir, open) in backends() {
        let store = open();
        let now = Utc::now();
        let mut ids = Vec::new();
        for _ in 0..2 {
            for event in due_run("default", now - chrono::Duration::seconds(1)) {
                if let Event::FlowRunCreated(run) = &event {
                    ids.push(run.id);
                }
                store.record(&event);
            }
        }
        store.flush().await;
        let (unheard, listed) = (ids[0], ids[1]);
        let claim = Claim { tenant: None, now, pool: None, queues: &[], deployment: None, limit: 10, taker: "w" };
        assert_eq!(store.claim_due(&claim).unwrap().len(), 2);
        let running = [listed.to_string()];
        assert!(store.release_unheard("w", &running, now - chrono::Duration::seconds(1)).unwrap().is_empty(), "fresh");
        let released = store.release_unheard("w", &running, now + chrono::Duration::seconds(1)).unwrap();
        assert_eq!(released, [unheard.to_string()], "only the run the worker does not list");
        assert_eq!(store.flow_run(None, &unheard.to_string()).unwrap().unwrap().claimed_by, None);
        assert_eq!(store.flow_run(None, &listed.to_string()).unwrap().unwrap().claimed_by.as_deref(), Some("w"));

        let Event::State(recorded) = state(listed, RunKind::Flow, StateType::Pending, None) else { unreachable!() };
        store.record(&Event::State(recorded.clone()));
        store.flush().await;
        assert!(store.has_state(&listed.to_string(), StateType::Pending, recorded.time).unwrap());
        let later = recorded.time + chrono::Duration::microseconds(1);
        assert!(!store.has_state(&listed.to_string(), StateType::Pending, later).unwrap());

        // A task run's state is known again too, by a time sent with more
        // precision than the store keeps (a worker's JSON carries nanoseconds).
        let task = RunId::new();
        store.record(&task_run(task, listed, "step", "step-0"));
        let Event::State(mut running) = state(task, RunKind::Task, StateType::Running, None) else { unreachable!() };
        running.time += chrono::Duration::nanoseconds(1_234 - i64::from(running.time.timestamp_subsec_nanos() % 1_000));
        store.record(&Event::State(running.clone()));
        store.flush().await;
        assert!(store.has_state(&task.to_string(), StateType::Running, running.time).unwrap());
        assert!(!store.has_state(&task.to_string(), StateType::Completed, running.time).unwrap());
        let later = running.time + chrono::Duration::microseconds(1);
        assert!(!store.has_state(&task.to_string(), StateType::Running, later).unwrap());
    }
}

#[tokio::test]
async fn purging_deletes_old_ended_runs_with_their_subflows_tasks_states_and_logs_and_keeps_the_rest() {
    for (_dir, open) in backends() {
        let store = open();
        let long_ago = Utc::now() - chrono::Duration::days(2);
        let at = |event: Event, time: DateTime<Utc>| match event {
            Event::State(record) => Event::State(StateRecord { time, ..record }),
            other => other,
        };
        // An old finished run with a subflow, a task in the subflow and logs.
        let (old, sub, task) = (RunId::new(), RunId::new(), RunId::new());
        store.record(&flow_run(old, "old-otter"));
        let Event::FlowRunCreated(sub_record) = flow_run(sub, "old-otter-sub") else { unreachable!() };
        store.record(&Event::FlowRunCreated(FlowRunRecord { parent: Some(old), ..sub_record }));
        store.record(&Event::TaskRunCreated(TaskRunRecord {
            id: task,
            flow_run: sub,
            task: "say_hello".into(),
            name: "say_hello-0".into(),
            input: "{}".into(),
            created: long_ago,
            call: None,
        }));
        store.record(&Event::Log(LogRecord {
            flow_run: sub,
            task_run: Some(task),
            level: LogLevel::Info,
            message: "long ago".into(),
            time: long_ago,
        }));
        for (run, kind) in [(task, RunKind::Task), (sub, RunKind::Flow), (old, RunKind::Flow)] {
            store.record(&at(state(run, kind, StateType::Running, None), long_ago));
            store.record(&at(state(run, kind, StateType::Completed, Some("null")), long_ago));
        }
        // Two more old finished runs, a recent one, and an old one still running.
        let more_old = [RunId::new(), RunId::new()];
        for (i, run) in more_old.iter().enumerate() {
            store.record(&flow_run(*run, &format!("old-heron-{i}")));
            store.record(&at(state(*run, RunKind::Flow, StateType::Failed, None), long_ago));
        }
        let (recent, running) = (RunId::new(), RunId::new());
        store.record(&flow_run(recent, "recent-otter"));
        store.record(&state(recent, RunKind::Flow, StateType::Completed, Some("null")));
        store.record(&flow_run(running, "running-otter"));
        store.record(&at(state(running, RunKind::Flow, StateType::Running, None), long_ago));
        store.flush().await;

        let cutoff = Utc::now() - chrono::Duration::days(1);
        assert_eq!(store.purge_ended(cutoff, 2).unwrap(), 2, "a batch is bounded");
        assert_eq!(store.purge_ended(cutoff, 2).unwrap(), 1);
        assert_eq!(store.purge_ended(cutoff, 2).unwrap(), 0, "nothing old and ended is left");

        for gone in [old, sub, more_old[0], more_old[1]] {
            assert!(store.flow_run(None, &gone.to_string()).unwrap().is_none(), "{gone} was kept");
            assert!(store.states(&gone.to_string()).unwrap().is_empty(), "{gone}'s states were kept");
        }
        assert!(store.task_runs(&sub.to_string()).unwrap().is_empty());
        assert!(store.states(&task.to_string()).unwrap().is_empty(), "the task's states were kept");
        assert!(store.logs(&sub.to_string(), None).unwrap().is_empty());
        for kept in [recent, running] {
            let row = store.flow_run(None, &kept.to_string()).unwrap();
            assert!(row.is_some(), "{kept} was deleted");
            assert!(!store.states(&kept.to_string()).unwrap().is_empty());
        }
    }
}

#[tokio::test]
async fn an_event_number_is_never_given_twice_even_after_every_run_is_purged() {
    use crate::core::events::EventFilter;
    for (_dir, open) in backends() {
        let store = open();
        let long_ago = Utc::now() - chrono::Duration::days(2);
        let newest = |store: &dyn Backend| {
            let filter = EventFilter { tenant: "default".into(), limit: 1, ..EventFilter::default() };
            store.events(&filter).unwrap().first().map(|event| event.seq)
        };
        let old = RunId::new();
        store.record(&flow_run(old, "old-otter"));
        for next in [StateType::Running, StateType::Completed] {
            let Event::State(record) = state(old, RunKind::Flow, next, None) else { unreachable!() };
            store.record(&Event::State(StateRecord { time: long_ago, ..record }));
        }
        store.flush().await;
        let before = newest(store.as_ref()).expect("the run's state changes are events");
        assert_eq!(store.purge_ended(Utc::now() - chrono::Duration::days(1), 10).unwrap(), 1);
        let recent = RunId::new();
        store.record(&flow_run(recent, "recent-otter"));
        store.record(&state(recent, RunKind::Flow, StateType::Running, None));
        store.flush().await;
        let after = newest(store.as_ref()).expect("an event of the new run");
        assert!(after > before, "event {after} after event {before} was purged");
    }
}

#[tokio::test]
async fn a_paused_run_is_held_by_nobody_and_a_cancel_ends_it_at_once() {
    for (_dir, open) in backends() {
        let store = open();
        let now = Utc::now();
        let mut id = None;
        for event in due_run("default", now - chrono::Duration::seconds(1)) {
            if let Event::FlowRunCreated(run) = &event {
                id = Some(run.id);
            }
            store.record(&event);
        }
        store.flush().await;
        let id = id.expect("a run");
        let claim = Claim { tenant: None, now, pool: None, queues: &[], deployment: None, limit: 10, taker: "w" };
        assert_eq!(store.claim_due(&claim).unwrap().len(), 1);
        for next in [StateType::Pending, StateType::Running, StateType::Paused] {
            store.record(&state(id, RunKind::Flow, next, None));
        }
        store.flush().await;
        let paused = store.flow_run(None, &id.to_string()).unwrap().unwrap();
        assert_eq!((paused.state, paused.claimed_by, paused.ended), (Some(StateType::Paused), None, None));
        assert!(store.claim_due(&claim).unwrap().is_empty(), "a paused run is not due");
        assert!(store.crash_held_by("w", now).unwrap().is_empty(), "its worker starting again does not crash it");
        assert_eq!(store.request_cancel(&id.to_string(), now).unwrap(), CancelOutcome::Cancelled);
        let cancelled = store.flow_run(None, &id.to_string()).unwrap().unwrap();
        assert_eq!(cancelled.state, Some(StateType::Cancelled));
        assert_eq!(cancelled.message.as_deref(), Some("Cancelled while it was paused for input"));
    }
}

#[tokio::test]
async fn state_changes_and_emitted_events_join_their_tenants_log_and_deliveries_and_counts_are_atomic() {
    use crate::core::events::{Action, Automation, EventFilter, Trigger};
    use crate::core::record::EmittedRecord;
    for (_dir, open) in backends() {
        let store = open();
        // The events carry their run's deployment's tags, not another deployment's of the flow.
        let now = Utc::now();
        store.upsert_deployment(&Deployment { tags: vec!["team-b".into()], ..deployment("leon", now) }).unwrap();
        store.upsert_deployment(&Deployment { tags: vec!["team-a".into()], ..deployment("leo", now) }).unwrap();
        let run = RunId::new();
        store.record(&flow_run(run, "eager-eel"));
        store.record(&state(run, RunKind::Flow, StateType::Running, None));
        store.record(&Event::Emitted(EmittedRecord {
            flow_run: run,
            task_run: None,
            name: "deploy.approved".into(),
            payload: json!({"by": "ada"}),
            time: Utc::now(),
        }));
        store.record(&state(run, RunKind::Flow, StateType::Completed, Some("1")));
        store.flush().await;
        let filter = |prefix: Option<&str>| EventFilter {
            tenant: "default".into(),
            name_prefix: prefix.map(str::to_string),
            limit: 10,
            ..EventFilter::default()
        };
        let events = store.events(&filter(None)).unwrap();
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["sluice.flow-run.Completed", "deploy.approved", "sluice.flow-run.Running"]);
        assert!(events.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
        let emitted = &events[1];
        assert_eq!((emitted.flow.as_deref(), emitted.deployment.as_deref()), (Some("hello"), Some("hello/leo")));
        assert_eq!(emitted.payload, json!({"by": "ada"}));
        assert!(events.iter().all(|e| e.tags == ["team-a"]), "the deployment's tags: {events:?}");
        assert_eq!(events[0].payload["state"], "Completed");
        assert_eq!(store.events(&filter(Some("sluice.flow-run."))).unwrap().len(), 2);
        let other = EventFilter { tenant: "other".into(), ..filter(None) };
        assert!(store.events(&other).unwrap().is_empty(), "another tenant's log is empty");
        let page = EventFilter { before: Some(events[1].seq), ..filter(None) };
        assert_eq!(store.events(&page).unwrap().len(), 1);

        let now = Utc::now();
        assert!(store.first_delivery("default", "hook", "d-1", now).unwrap());
        assert!(!store.first_delivery("default", "hook", "d-1", now).unwrap(), "a redelivery is known");

        let automation = Automation {
            id: RunId::new().to_string(),
            tenant: "default".into(),
            name: "three".into(),
            trigger: Trigger { event: "x".into(), threshold: 3, within_seconds: Some(60), ..Trigger::default() },
            action: Action::CancelRun,
            created: now,
        };
        assert!(store.create_automation(&automation).unwrap());
        assert!(!store.create_automation(&automation).unwrap(), "names are unique in a tenant");
        let window = chrono::Duration::seconds(60);
        let hit = |at| store.automation_hit(&automation.id, at, window, 3).unwrap();
        let at = |seconds| now + chrono::Duration::seconds(seconds);
        assert!(!hit(at(0)) && !hit(at(30)));
        assert!(!hit(at(65)), "the first match left the window: two in it");
        assert!(hit(at(66)), "three within a minute");
        assert!(!hit(at(67)), "the count starts again after firing");
        assert!(store.automations("other").unwrap().is_empty());
        assert!(!store.delete_automation("other", "three").unwrap());
        assert!(store.delete_automation("default", "three").unwrap());
    }
}
