//! Prints states and logs as they happen, in the style Prefect users know:
//! `12:00:01.234 | INFO    | Task run 'say_hello-0' - Hello Leo!`.

use crate::core::ids::RunId;
use crate::core::record::{Event, LogLevel, Recorder, RunKind};
use crate::core::state::StateType;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

/// Where the lines go.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error (when stdout carries JSON).
    Stderr,
}

/// A recorder that prints.
pub struct Console {
    stream: Stream,
    names: Mutex<HashMap<RunId, (RunKind, String)>>,
}

impl Console {
    /// Prints to `stream`.
    pub fn new(stream: Stream) -> Self {
        Self { stream, names: Mutex::default() }
    }

    fn print(&self, level: LogLevel, source: &str, message: &str) {
        let time = chrono::Local::now().format("%H:%M:%S%.3f");
        let line = format!("{time} | {:<7} | {source} - {message}", level.name());
        let line = format!("{}\n", super::terminal::printable(&line));
        let _ = match self.stream {
            Stream::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            Stream::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
        };
    }

    /// Knows run `id` as `name` from now on, printing nothing.
    pub fn name(&self, id: RunId, kind: RunKind, name: &str) {
        self.names.lock().expect("names lock").insert(id, (kind, name.to_string()));
    }

    fn source(&self, run: RunId) -> String {
        match self.names.lock().expect("names lock").get(&run) {
            Some((RunKind::Flow, name)) => format!("Flow run '{name}'"),
            Some((RunKind::Task, name)) => format!("Task run '{name}'"),
            None => format!("Run '{run}'"),
        }
    }
}

impl Recorder for Console {
    fn record(&self, event: &Event) {
        match event {
            Event::FlowRunCreated(run) => {
                self.names.lock().expect("names lock").insert(run.id, (RunKind::Flow, run.name.clone()));
                let what = if run.parent.is_some() { "subflow run" } else { "flow run" };
                let message = format!("Created {what} '{}' for flow '{}'", run.name, run.flow);
                self.print(LogLevel::Info, "sluice.engine", &message);
            }
            Event::TaskRunCreated(run) => {
                self.names.lock().expect("names lock").insert(run.id, (RunKind::Task, run.name.clone()));
            }
            Event::State(state) => {
                let message = state.message.as_deref().unwrap_or("");
                let (level, text) = match state.state {
                    StateType::AwaitingRetry => (LogLevel::Warning, message.to_string()),
                    StateType::Running if state.kind == RunKind::Flow => {
                        (LogLevel::Info, "Beginning flow run".to_string())
                    }
                    s if s.is_terminal() => {
                        let level = if s.is_success() { LogLevel::Info } else { LogLevel::Error };
                        let detail = if message.is_empty() { String::new() } else { format!("'{message}'") };
                        (level, format!("Finished in state {s}({detail})"))
                    }
                    _ => return,
                };
                self.print(level, &self.source(state.run), &text);
            }
            Event::Log(log) => {
                let source = self.source(log.task_run.unwrap_or(log.flow_run));
                self.print(log.level, &source, &log.message);
            }
            Event::Emitted(emitted) => {
                let source = self.source(emitted.task_run.unwrap_or(emitted.flow_run));
                self.print(LogLevel::Info, &source, &format!("Emitted event {} {}", emitted.name, emitted.payload));
            }
        }
    }
}
