//! A hostile guest written straight against `wit/flow.wit` with wit-bindgen,
//! without the SDK, so nothing between it and the host smooths over what it
//! sends. Each flow misbehaves in one way; the host must refuse or contain it
//! with a clear reason and stay healthy.
//!
//! What `describe` returns is chosen by [`MODE`], a marker in the data
//! section that the tests patch in a copy of the component (same length), so
//! one build gives every hostile description: `describe:normal`, `:huge`,
//! `:badschema`, `:fileref`, `:httpref`, `:traversal`, `:nulname` and `:longname`.

/// The guest side of `wit/flow.wit`, generated here rather than taken from the SDK.
mod bindings {
    // Generated glue: the canonical ABI is unsafe by nature.
    #![allow(unsafe_code, missing_docs, clippy::all)]
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "sluice:flow/flow",
    });
    use super::Hostile;
    export!(Hostile);
}

use bindings::sluice::flow::host;
use bindings::sluice::flow::types::{Failure, FlowInfo, LogLevel, TaskCall, TaskInfo, TaskPolicy};
use bindings::{ComponentInfo, Guest, RunError};

/// Which description `describe` returns; patched by the tests.
static MODE: [u8; 24] = *b"describe:normal\0\0\0\0\0\0\0\0\0";

/// The mode, read at run time so the compiler cannot fold the marker away.
fn mode() -> String {
    let bytes = std::hint::black_box(&MODE);
    let text = &bytes["describe:".len()..];
    String::from_utf8_lossy(text).trim_end_matches('\0').to_string()
}

const OBJECT: &str = r#"{"type":"object"}"#;
const NOOP_INPUT: &str = r#"{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}"#;

fn flow(name: &str, schema: &str) -> FlowInfo {
    FlowInfo { name: name.to_string(), description: String::new(), parameters_schema: schema.to_string() }
}

fn task(name: &str, schema: &str) -> TaskInfo {
    let policy = TaskPolicy {
        retries: 0,
        retry_delay_ms: 0,
        backoff: 1.0,
        jitter: 0.0,
        timeout_ms: None,
        cache: false,
        cache_expiration_ms: None,
    };
    TaskInfo { name: name.to_string(), description: String::new(), input_schema: schema.to_string(), policy }
}

fn failed(message: String) -> RunError {
    RunError::Failed(Failure { message, retryable: false })
}

fn number(parameters: &serde_json::Value, key: &str, default: u64) -> u64 {
    parameters.get(key).and_then(serde_json::Value::as_u64).unwrap_or(default)
}

struct Hostile;

impl Guest for Hostile {
    fn describe() -> ComponentInfo {
        let mut flows = ["fan_out", "abandon", "log_flood", "big_result", "bad_input", "wait_flood"]
            .map(|f| flow(f, OBJECT))
            .to_vec();
        let mut tasks = vec![task("noop", NOOP_INPUT), task("slow", OBJECT), task("big", OBJECT)];
        match mode().as_str() {
            "huge" => flows[0].description = "x".repeat(40 << 20),
            "badschema" => tasks[0].input_schema = r#"{"type":5}"#.to_string(),
            "fileref" => flows[0].parameters_schema = r#"{"$ref":"file:///etc/passwd"}"#.to_string(),
            "httpref" => {
                tasks[1].input_schema = r#"{"properties":{"a":{"$ref":"http://127.0.0.1:9/s.json"}}}"#.to_string()
            }
            "traversal" => flows.push(flow("../../etc/passwd", OBJECT)),
            "nulname" => tasks.push(task("evil\0\x1b[31mname", OBJECT)),
            "longname" => flows.push(flow(&"n".repeat(10 << 10), OBJECT)),
            _ => {}
        }
        ComponentInfo { version: "0.1.0".to_string(), flows, tasks }
    }

    fn run_flow(name: String, parameters: String) -> Result<String, RunError> {
        let parameters: serde_json::Value = serde_json::from_str(&parameters).unwrap_or_default();
        match name.as_str() {
            // Submits `first` slow tasks and leaves them running, then one batch of `count` calls.
            "fan_out" => {
                let slow: Vec<TaskCall> = (0..number(&parameters, "first", 0))
                    .map(|_| TaskCall { name: "slow".into(), input: r#"{"ms":60000}"#.into() })
                    .collect();
                host::submit(&slow);
                let calls: Vec<TaskCall> = (0..number(&parameters, "count", 1_000_000))
                    .map(|i| TaskCall { name: "noop".into(), input: format!(r#"{{"n":{i}}}"#) })
                    .collect();
                let handles = host::submit(&calls);
                drop(calls);
                let ok = host::wait(&handles).iter().filter(|r| r.is_ok()).count();
                Ok(ok.to_string())
            }
            // Submits `count` slow tasks and returns without waiting for any.
            "abandon" => {
                let calls: Vec<TaskCall> = (0..number(&parameters, "count", 20))
                    .map(|_| TaskCall { name: "slow".into(), input: r#"{"ms":5000}"#.into() })
                    .collect();
                Ok(host::submit(&calls).len().to_string())
            }
            // One log line of `bytes` bytes, then lines that try to drive the operator's terminal.
            "log_flood" => {
                host::log(LogLevel::Info, &"x".repeat(number(&parameters, "bytes", 10 << 20) as usize));
                let forged = "\x1b[2J\x1b]0;pwned\x07cleared\rNUL\0here\n12:00:00.000 | INFO    | forged line";
                host::log(LogLevel::Warning, forged);
                println!("stdout \x1b[31mred\x1b[0m\r overwritten");
                Ok("null".to_string())
            }
            // A task returning `mib` MiB.
            "big_result" => {
                let input = format!(r#"{{"mib":{}}}"#, number(&parameters, "mib", 200));
                host::run_task("big", &input).map(|r| r.len().to_string())
            }
            // Task inputs that are JSON but do not fit the task's schema.
            "bad_input" => {
                let mut seen = Vec::new();
                for input in ["[1,2]", r#"{"n":"seven"}"#, "{}"] {
                    seen.push(match host::run_task("noop", input) {
                        Ok(result) => format!("accepted: {result}"),
                        Err(RunError::InvalidInput(message)) => format!("invalid input: {message}"),
                        Err(_) => "other error".to_string(),
                    });
                }
                Ok(serde_json::Value::from(seen).to_string())
            }
            // Waits on `count` handles it never got: each answer would cost the host a result.
            "wait_flood" => {
                let handles: Vec<u64> = (1..=number(&parameters, "count", 2_000_000)).collect();
                Ok(host::wait(&handles).len().to_string())
            }
            other => Err(RunError::Unknown(format!("no flow named `{other}`"))),
        }
    }

    fn run_task(name: String, input: String) -> Result<String, RunError> {
        let input: serde_json::Value = serde_json::from_str(&input).unwrap_or_default();
        match name.as_str() {
            "noop" => Ok(input.get("n").cloned().unwrap_or_default().to_string()),
            "slow" => {
                std::thread::sleep(std::time::Duration::from_millis(number(&input, "ms", 1000)));
                Ok("null".to_string())
            }
            "big" => {
                let mib = number(&input, "mib", 200) as usize;
                let mut json = String::with_capacity((mib << 20) + 2);
                json.push('"');
                json.extend(std::iter::repeat_n('x', mib << 20));
                json.push('"');
                Ok(json)
            }
            other => Err(failed(format!("no task named `{other}`"))),
        }
    }
}
