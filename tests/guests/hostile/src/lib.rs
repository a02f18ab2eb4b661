//! Flows that misbehave on purpose. Each must end as a recorded state with
//! a clear reason while the host stays healthy.

use sluice_sdk::{flow, log, task};

/// Calls a task that never returns; its timeout must stop it.
#[flow]
fn spin() -> sluice_sdk::Result<()> {
    spin_forever()
}

/// Loops forever without calling the host.
#[task(timeout = "300ms")]
fn spin_forever() {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Loops forever in the flow itself (stopped only by a flow timeout or cancel).
#[flow]
fn spin_flow() {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Calls a task that panics (a trap), retried once.
#[flow]
fn trap() -> sluice_sdk::Result<()> {
    explode()
}

/// Panics, which traps the instance.
#[task(retries = 1)]
fn explode() {
    panic!("boom from inside the guest");
}

/// Calls a task that allocates until refused.
#[flow]
fn hog() -> sluice_sdk::Result<usize> {
    allocate()
}

/// Allocates 1 MiB at a time until the host refuses.
#[task]
fn allocate() -> usize {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![1u8; 1 << 20]);
        log::debug!("holding {} MiB", blocks.len());
    }
}

/// Calls a task that recurses until its stack runs out.
#[flow]
fn deep() -> sluice_sdk::Result<u64> {
    recurse()
}

/// Recurses without end.
#[task]
fn recurse() -> u64 {
    fn down(depth: u64) -> u64 {
        if depth == u64::MAX {
            return depth;
        }
        std::hint::black_box(down(depth + 1)) + 1
    }
    down(0)
}

/// Tries to read host files, environment and network, and reports what it got.
#[flow]
fn snoop() -> Vec<String> {
    let mut seen = Vec::new();
    seen.push(match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => format!("read /etc/passwd: {} bytes", text.len()),
        Err(e) => format!("files refused: {e}"),
    });
    seen.push(format!("environment variables: {}", std::env::vars().count()));
    seen.push(match std::net::TcpStream::connect("127.0.0.1:22") {
        Ok(_) => "connected to 127.0.0.1:22".to_string(),
        Err(e) => format!("network refused: {e}"),
    });
    let mut line = String::new();
    seen.push(match std::io::stdin().read_line(&mut line) {
        Ok(n) => format!("stdin gave {n} bytes"),
        Err(e) => format!("stdin refused: {e}"),
    });
    seen
}

/// Prints to stdout and stderr; both should land in the run's log.
#[flow]
fn chatter() {
    println!("to stdout");
    eprintln!("to stderr");
}

/// Well-behaved: computes for `rounds` million steps without calling the
/// host, then returns. CPU-time accounting is tested with it.
#[flow]
fn crunch(rounds: u64) -> u64 {
    let mut x: u64 = 1;
    for _ in 0..rounds.saturating_mul(1_000_000) {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407));
    }
    x
}

sluice_sdk::export_flows! {
    flows: [spin, spin_flow, trap, hog, deep, snoop, chatter, crunch],
    tasks: [spin_forever, explode, allocate, recurse],
}
