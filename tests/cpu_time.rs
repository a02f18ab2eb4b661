//! CPU limits charge CPU time, not wall time: a well-behaved guest on a host
//! so busy that it gets a small share of a core runs far longer (in wall
//! time) than its CPU limit, and still completes, because it used less CPU
//! than the limit allows.

mod support;

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use support::{Sluice, guest, states};

/// Millions of steps `crunch` computes: a fraction of a second of CPU.
const ROUNDS: &str = "rounds=20";

/// Threads that keep every core of this machine busy until dropped.
struct BusyCores {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl BusyCores {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x: u64 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for BusyCores {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().expect("a busy thread");
        }
    }
}

/// `sluice exec` of the `crunch` flow with `extra` flags; with `nice`, at
/// the lowest CPU priority, so the busy threads get almost every core cycle.
fn crunch(sluice: &Sluice, nice: bool, extra: &[&str]) -> Value {
    let template = sluice.command();
    let mut command = if nice {
        let mut command = Command::new("nice");
        command.args(["-n", "19"]).arg(template.get_program());
        command
    } else {
        Command::new(template.get_program())
    };
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let component = guest("hostile_flow");
    command.args(["exec", component.to_str().unwrap(), "--flow", "crunch", "--param", ROUNDS, "--output", "json"]);
    let output = command.args(extra).output().expect("running sluice exec");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("not a JSON report ({e}):\n{}", String::from_utf8_lossy(&output.stderr));
    })
}

/// Wall time from the flow run's `Running` state to its final state.
fn wall_time_running(report: &Value) -> Duration {
    let history = report["flow_runs"][0]["states"].as_array().expect("states");
    let time = |entry: &Value| entry["time"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    let running = history.iter().find(|s| s["state"] == "Running").expect("a Running state");
    (time(history.last().unwrap()) - time(running)).to_std().unwrap()
}

#[test]
fn a_guest_starved_of_processor_time_is_charged_only_the_cpu_it_used() {
    let sluice = Sluice::new();
    // Unloaded, the flow's wall time bounds the CPU it needs (one thread
    // cannot use more CPU than wall time); twice that is its limit.
    // The quickest of three: other work on the host only ever adds wall time.
    let alone = (0..3)
        .map(|_| {
            let alone = crunch(&sluice, false, &[]);
            assert_eq!(states(&alone["flow_runs"][0]), ["Pending", "Running", "Completed"], "{alone:#}");
            wall_time_running(&alone)
        })
        .min()
        .unwrap();
    let limit = alone * 2 + Duration::from_millis(20);
    let limit_flag = format!("{}ms", limit.as_millis());

    // Every starved run must complete; at least one must have been stretched
    // past its limit in wall time, or the test could not tell CPU time from
    // wall time (the scheduler decides how much a nice 19 process gets).
    let mut longest = Duration::ZERO;
    for _ in 0..3 {
        let busy = BusyCores::start();
        let starved = crunch(&sluice, true, &["--run-cpu-limit", &limit_flag]);
        drop(busy);
        let waited = wall_time_running(&starved);
        assert_eq!(
            states(&starved["flow_runs"][0]),
            ["Pending", "Running", "Completed"],
            "a guest that ran {waited:?} of wall time under a {limit:?} CPU limit was stopped: {:#}",
            starved["flow_run"]
        );
        longest = longest.max(waited);
        if waited > limit {
            return;
        }
    }
    panic!(
        "the busy threads never slowed the guest past its {limit:?} limit (at most {longest:?}); this check needs a \
         host where a nice 19 process yields to busy threads"
    );
}
