//! Flows the web UI's browser tests drive: one whose log lines and result
//! are markup an attacker would write, one with every kind of parameter the
//! run form must render, and one that takes its time so a page can watch it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_sdk::{flow, log, task};

/// Logs and returns markup that must be shown as text, never run.
#[flow]
fn xss(#[default("<b>bold</b>".to_string())] label: String) -> sluice_sdk::Result<String> {
    log::info!("<script>window.__pwned = 'script'</script>");
    log::warn!("<img src=x onerror=\"window.__pwned = 'img'\">");
    shout(label.clone())?;
    Ok(format!("<script>window.__pwned = 'result'</script>{label}"))
}

/// Logs its input, markup and all.
#[task]
fn shout(label: String) {
    log::info!("task says {label}");
}

/// How loud a greeting is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Volume {
    /// Whispered.
    Quiet,
    /// Said.
    Normal,
    /// Shouted.
    Loud,
}

/// Where to send the greeting.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Host name.
    pub host: String,
    /// Port number.
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_port() -> u16 {
    8080
}

/// Greets `name` `times` times: every kind of parameter a run form renders.
#[flow]
fn typed(
    name: String,
    #[default(2)] times: u32,
    #[default(0.5)] ratio: f64,
    #[default(false)] dry_run: bool,
    #[default(Volume::Normal)] volume: Volume,
    #[default(Target { host: "localhost".into(), port: 8080 })] target: Target,
    #[default(vec!["a".to_string(), "b".to_string()])] labels: Vec<String>,
) -> sluice_sdk::Result<String> {
    for _ in 0..times {
        log::info!("{volume:?} hello {name} via {}:{} ({labels:?}, {ratio}, {dry_run})", target.host, target.port);
    }
    Ok(format!("greeted {name} {times} times"))
}

/// Logs a line every `interval_ms` for `steps` steps, each in a task.
#[flow]
fn slow(#[default(5)] steps: u32, #[default(200)] interval_ms: u64) -> sluice_sdk::Result<u32> {
    for step in 1..=steps {
        nap(step, interval_ms)?;
    }
    Ok(steps)
}

/// Sleeps, then says so.
#[task]
fn nap(step: u32, interval_ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(interval_ms));
    log::info!("step {step} done");
}

sluice_sdk::export_flows! { flows: [xss, typed, slow], tasks: [shout, nap] }
