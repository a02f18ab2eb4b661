//! `sluice run … --watch` against a server: the same lines a local watch
//! prints (flow and subflow creation, `Beginning flow run`, retries as
//! warnings with their message, every run's end, logs at their level), in
//! the order their events happened, read from the API. Losing the server
//! (a restart) is not the end: it reconnects, and since every line printed
//! is remembered, it resumes after the last one.

use super::CliError;
use super::terminal::printable;
use crate::client::ApiClient;
use crate::core::state::StateType;
use crate::service::ServiceError;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

/// How often the server is asked; how long a lost server is waited for.
const POLL: Duration = Duration::from_millis(150);
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// One line to print, at the time its event happened.
struct Line {
    time: DateTime<Utc>,
    key: String,
    level: &'static str,
    source: String,
    message: String,
}

/// Follows run `id` until it ends; exit 0 only when it ends `Completed`.
pub async fn watch(api: &ApiClient, id: &str) -> Result<ExitCode, CliError> {
    let mut printed: HashSet<String> = HashSet::new();
    let mut lost_since: Option<std::time::Instant> = None;
    let mut last_end: Option<(StateType, Value)> = None;
    loop {
        match poll(api, id).await {
            Ok((mut lines, root)) => {
                if lost_since.take().is_some() {
                    println!("Reconnected to {}; resuming after the last line shown", api.url());
                }
                lines.sort_by_key(|l| l.time);
                for line in lines {
                    if printed.insert(line.key.clone()) {
                        let time = line.time.with_timezone(&chrono::Local).format("%H:%M:%S%.3f");
                        let text = format!("{time} | {:<7} | {} - {}", line.level, line.source, line.message);
                        println!("{}", printable(&text));
                    }
                }
                let state = root["state"].as_str().and_then(StateType::parse);
                // A run that crashed may be scheduled again a moment later (its
                // deployment's retries): an end counts once seen twice running.
                let ended = state.filter(|s| s.is_terminal()).map(|s| (s, root["attempt"].clone()));
                if ended.is_none() || ended != last_end {
                    last_end = ended;
                } else if let Some((state, _)) = ended {
                    if root["result"] != Value::Null {
                        println!("Result: {}", printable(&root["result"].to_string()));
                    }
                    return Ok(if state == StateType::Completed { ExitCode::SUCCESS } else { ExitCode::from(1) });
                }
            }
            Err(err @ (ServiceError::NotFound(_) | ServiceError::Denied(_) | ServiceError::Invalid(_))) => {
                return Err(err.into());
            }
            Err(err) => {
                let since = *lost_since.get_or_insert_with(|| {
                    eprintln!("Lost the server ({err}); reconnecting…");
                    std::time::Instant::now()
                });
                if since.elapsed() > GIVE_UP_AFTER {
                    return Err(CliError::failure(format!(
                        "the server has not answered for {} s; the run goes on without this watch",
                        GIVE_UP_AFTER.as_secs()
                    )));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every line the run's tree has so far, and the root run.
async fn poll(api: &ApiClient, id: &str) -> Result<(Vec<Line>, Value), ServiceError> {
    let mut lines = Vec::new();
    let mut pending = vec![id.to_string()];
    let mut root = Value::Null;
    while let Some(flow_run) = pending.pop() {
        let detail = api.inspect_run(&flow_run).await?;
        let run = &detail["flow_run"];
        if root.is_null() {
            root = run.clone();
        }
        flow_lines(run, &detail["states"], &mut lines);
        for task in detail["task_runs"].as_array().into_iter().flatten() {
            task_lines(&task["task_run"], &task["states"], &mut lines);
        }
        for sub in detail["subflow_runs"].as_array().into_iter().flatten() {
            if let Some(sub_id) = sub["flow_run"]["id"].as_str() {
                pending.push(sub_id.to_string());
            }
        }
        for log in api.logs(&flow_run, None).await? {
            let source = if log.task_run.is_some() { "Task run" } else { "Flow run" };
            lines.push(Line {
                time: log.time,
                key: format!("log {} {} {}", log.time.timestamp_micros(), log.run_name, log.message),
                level: log.level.name(),
                source: format!("{source} '{}'", log.run_name),
                message: log.message,
            });
        }
    }
    Ok((lines, root))
}

fn time_of(value: &Value) -> Option<DateTime<Utc>> {
    value.as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

fn flow_lines(run: &Value, states: &Value, lines: &mut Vec<Line>) {
    let (id, name, flow) = (run["id"].as_str().unwrap_or(""), run["name"].as_str().unwrap_or(""), &run["flow"]);
    let flow = flow.as_str().unwrap_or("");
    if let Some(created) = time_of(&run["created"]) {
        let what = if run["parent"].is_null() { "flow run" } else { "subflow run" };
        lines.push(Line {
            time: created,
            key: format!("created {id}"),
            level: "INFO",
            source: "sluice.engine".into(),
            message: format!("Created {what} '{name}' for flow '{flow}'"),
        });
    }
    state_lines(id, &format!("Flow run '{name}'"), true, states, lines);
}

fn task_lines(run: &Value, states: &Value, lines: &mut Vec<Line>) {
    let (id, name) = (run["id"].as_str().unwrap_or(""), run["name"].as_str().unwrap_or(""));
    state_lines(id, &format!("Task run '{name}'"), false, states, lines);
}

/// The lines a local watch prints for states: a flow's start, retries, ends.
fn state_lines(id: &str, source: &str, flow: bool, states: &Value, lines: &mut Vec<Line>) {
    for (i, state) in states.as_array().into_iter().flatten().enumerate() {
        let (Some(kind), Some(time)) = (state["state"].as_str().and_then(StateType::parse), time_of(&state["time"]))
        else {
            continue;
        };
        let message = state["message"].as_str().unwrap_or("");
        let (level, text) = match kind {
            StateType::AwaitingRetry => ("WARNING", message.to_string()),
            StateType::Running if flow => ("INFO", "Beginning flow run".to_string()),
            s if s.is_terminal() => {
                let detail = if message.is_empty() { String::new() } else { format!("'{message}'") };
                (if s.is_success() { "INFO" } else { "ERROR" }, format!("Finished in state {s}({detail})"))
            }
            _ => continue,
        };
        lines.push(Line { time, key: format!("state {id} {i}"), level, source: source.to_string(), message: text });
    }
}
