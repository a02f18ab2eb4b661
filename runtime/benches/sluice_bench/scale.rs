//! History queries at scale: `sluice flow-run ls` and `sluice flow-run
//! inspect` as whole processes on a database holding N task runs.
//!
//! How the rows are made: one real flow run of `tasks_per_run` tasks is
//! recorded by the runner into the real store (so every row is what the
//! runtime writes), then copied in bulk with SQL until there are N task
//! runs. A copy is the recorded rows of the template run (flow run, its
//! task runs, every state and log line), with new ids for the flow run and
//! each task run and a new run name; every other column, including ones
//! this file does not know about, is copied as it is.

use crate::processes::{run, sluice};
use anyhow::{Context, Result, ensure};
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use sluice::core::ids::{RunId, run_name};
use sluice::runner::{RunSettings, Runner};
use sluice::sandbox::compile_cache::CompileCache;
use sluice::sandbox::engine::EngineSettings;
use sluice::sandbox::program::Sandbox;
use sluice::store::SqliteStore;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Builds the history, then times `reps` runs of each query.
pub async fn scale(task_runs: u64, tasks_per_run: u32, reps: usize) -> Result<Value> {
    ensure!(tasks_per_run > 0 && task_runs >= u64::from(tasks_per_run), "task_runs must be ≥ tasks_per_run > 0");
    let home = tempfile::tempdir()?;
    let db = home.path().join("sluice.db");
    let start = Instant::now();
    let template = record_template(&db, tasks_per_run).await?;
    let copies = task_runs / u64::from(tasks_per_run) - 1;
    copy_runs(&db, &template, copies)?;
    let built_s = start.elapsed().as_secs_f64();
    let connection = Connection::open(&db)?;
    let count = |table: &str| -> Result<u64> {
        Ok(connection.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0))?)
    };
    let (flow_runs, recorded_task_runs, states) = (count("flow_runs")?, count("task_runs")?, count("states")?);
    ensure!(
        recorded_task_runs == (copies + 1) * u64::from(tasks_per_run),
        "{recorded_task_runs} task runs in the database"
    );
    drop(connection);

    let mut ls = Vec::new();
    let mut inspect = Vec::new();
    let mut inspect_bytes = 0;
    for _ in 0..reps {
        let start = Instant::now();
        run(sluice(home.path()).args(["flow-run", "ls"]))?;
        ls.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let output = run(sluice(home.path()).args(["flow-run", "inspect", &template]))?;
        inspect.push(start.elapsed().as_secs_f64());
        inspect_bytes = output.stdout.len();
    }
    Ok(json!({
        "flow_runs": flow_runs, "task_runs": recorded_task_runs, "states": states,
        "db_bytes": std::fs::metadata(&db)?.len(), "build_s": built_s,
        "ls_s": ls, "inspect_s": inspect, "inspect_bytes": inspect_bytes, "tasks_per_run": tasks_per_run,
    }))
}

/// Runs the `sequential` flow once into the store at `db`; returns its id.
async fn record_template(db: &Path, tasks: u32) -> Result<String> {
    let bytes = std::fs::read(crate::component("bench_flow.wasm")?)?;
    let sandbox = Sandbox::new(&EngineSettings::default(), CompileCache::disabled())?;
    let program = Arc::new(sandbox.load(&bytes).await?);
    let store = Arc::new(SqliteStore::open(db)?);
    let runner = Runner::new(program, store.clone(), store.clone(), RunSettings::default());
    let id = RunId::new();
    let outcome = runner.run(id, run_name(&mut rand::rng()), "sequential", &json!({ "count": tasks })).await;
    ensure!(outcome.state.is_success(), "the template run failed: {outcome:?}");
    store.flush().await;
    Ok(id.to_string())
}

/// The columns of `table`, each replaced by its expression in `replace` or kept.
fn select_list(
    connection: &Connection,
    table: &str,
    alias: &str,
    replace: &[(&str, &str)],
) -> Result<(String, String)> {
    let mut statement = connection.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let columns: Vec<String> = statement.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
    ensure!(!columns.is_empty(), "no table {table}");
    // `seq` is the INTEGER PRIMARY KEY of logs: SQLite numbers the copies.
    // A state's is its number within its run: the copy keeps it.
    let columns: Vec<&String> = columns.iter().filter(|c| c.as_str() != "seq" || table == "states").collect();
    let names = columns.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
    let values = columns
        .iter()
        .map(|c| {
            replace.iter().find(|(name, _)| name == c).map_or(format!("{alias}.{c}"), |(_, expr)| expr.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok((names, values))
}

/// Adds `copies` copies of the flow run `template` and everything recorded under it.
fn copy_runs(db: &Path, template: &str, copies: u64) -> Result<()> {
    let mut connection = Connection::open(db)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "OFF")?;
    connection.execute_batch("CREATE TEMP TABLE id_map (old TEXT PRIMARY KEY, new TEXT NOT NULL)")?;
    let task_ids: Vec<String> = connection
        .prepare("SELECT id FROM task_runs WHERE flow_run = ?1")?
        .query_map([template], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let (fr_cols, fr_vals) = select_list(&connection, "flow_runs", "f", &[("id", "?1"), ("name", "?2")])?;
    let (tr_cols, tr_vals) = select_list(&connection, "task_runs", "t", &[("id", "m.new"), ("flow_run", "?1")])?;
    let (st_cols, st_vals) = select_list(&connection, "states", "s", &[("run", "m.new")])?;
    let (lg_cols, lg_vals) = select_list(
        &connection,
        "logs",
        "l",
        &[("flow_run", "?1"), ("task_run", "(SELECT new FROM id_map WHERE old = l.task_run)")],
    )?;
    let mut rng = rand::rng();
    for batch in (0..copies).collect::<Vec<_>>().chunks(50) {
        let tx = connection.transaction()?;
        {
            let mut map = tx.prepare("INSERT INTO id_map (old, new) VALUES (?1, ?2)")?;
            let mut flow_run = tx.prepare(&format!(
                "INSERT INTO flow_runs ({fr_cols}) SELECT {fr_vals} FROM flow_runs f WHERE f.id = ?3"
            ))?;
            let mut tasks = tx.prepare(&format!(
                "INSERT INTO task_runs ({tr_cols}) SELECT {tr_vals} FROM task_runs t JOIN id_map m ON m.old = t.id WHERE t.flow_run = ?2"
            ))?;
            let mut states = tx.prepare(&format!(
                "INSERT INTO states ({st_cols}) SELECT {st_vals} FROM states s JOIN id_map m ON m.old = s.run"
            ))?;
            let mut logs = tx
                .prepare(&format!("INSERT INTO logs ({lg_cols}) SELECT {lg_vals} FROM logs l WHERE l.flow_run = ?2"))?;
            for _ in batch {
                tx.execute("DELETE FROM id_map", [])?;
                let new_flow_run = RunId::new().to_string();
                map.execute(params![template, new_flow_run])?;
                for old in &task_ids {
                    map.execute(params![old, RunId::new().to_string()])?;
                }
                flow_run.execute(params![new_flow_run, run_name(&mut rng), template])?;
                tasks.execute(params![new_flow_run, template])?;
                states.execute([])?;
                logs.execute(params![new_flow_run, template])?;
            }
        }
        tx.commit().context("committing copied runs")?;
    }
    Ok(())
}
