//! Flows that reach for what they were not given, or break the contract.
//! Each must end as a recorded state with a clear reason (or report the
//! refusal it met) while the host, and every other run, stays healthy.

mod http;

use sluice_sdk::{flow, task, wait_all};
use std::collections::BTreeMap;

/// Writes `mib` MiB to stdout in 1 KiB lines, 64 KiB per write (as much as
/// the host takes at once): far past any log limit, as fast as it can.
#[flow]
fn shout(mib: u64) -> sluice_sdk::Result<u64> {
    let line = format!("{}\n", "x".repeat(1023));
    let chunk = line.repeat(64);
    let stdout = wasip2::cli::stdout::get_stdout();
    let failed = |e: wasip2::io::streams::StreamError| sluice_sdk::Error::msg(format!("stdout: {e:?}"));
    for _ in 0..mib * 16 {
        let mut rest = chunk.as_bytes();
        while !rest.is_empty() {
            let room = stdout.check_write().map_err(failed)? as usize;
            if room == 0 {
                stdout.subscribe().block();
                continue;
            }
            let (now, later) = rest.split_at(room.min(rest.len()));
            stdout.write(now).map_err(failed)?;
            rest = later;
        }
    }
    Ok(mib)
}

/// Calls a task that loops forever and has no timeout of its own: only its
/// CPU limit stops it.
#[flow]
fn burn() -> sluice_sdk::Result<()> {
    burn_forever()
}

/// Loops forever without calling the host.
#[task]
fn burn_forever() {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Starts a task that forks itself without end.
#[flow]
fn fork_bomb() -> sluice_sdk::Result<u64> {
    fork(0)
}

/// Submits two copies of itself one level deeper and waits for both.
#[task]
fn fork(depth: u64) -> sluice_sdk::Result<u64> {
    let children = vec![fork::submit(depth + 1), fork::submit(depth + 1)];
    let mut total = 1;
    for result in wait_all(children) {
        total += result?;
    }
    Ok(total)
}

/// Tries to read, list and write host files; reports what it met.
#[flow]
fn read_files() -> Vec<String> {
    let mut seen = Vec::new();
    for path in ["/etc/passwd", "/etc/hostname", "/proc/self/environ", "secrets.key", "../sluice.db"] {
        seen.push(match std::fs::read(path) {
            Ok(bytes) => format!("read {path}: {} bytes", bytes.len()),
            Err(e) => format!("read {path} refused: {e}"),
        });
    }
    seen.push(match std::fs::read_dir("/") {
        Ok(entries) => format!("listed /: {} entries", entries.count()),
        Err(e) => format!("list / refused: {e}"),
    });
    seen.push(match std::fs::write("/tmp/sluice-escape", b"out") {
        Ok(()) => "wrote /tmp/sluice-escape".to_string(),
        Err(e) => format!("write refused: {e}"),
    });
    seen
}

/// The environment it sees: names, and the length of each value (values
/// themselves stay out of the result).
#[flow]
fn read_env() -> BTreeMap<String, usize> {
    std::env::vars().map(|(name, value)| (name, value.len())).collect()
}

/// Tries TCP to `port` on the loopback, UDP, and a DNS lookup; reports what it met.
#[flow]
fn open_sockets(port: u16) -> Vec<String> {
    use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
    vec![
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(_) => format!("connected to 127.0.0.1:{port}"),
            Err(e) => format!("tcp refused: {e}"),
        },
        match UdpSocket::bind("0.0.0.0:0") {
            Ok(socket) => match socket.send_to(b"hello", ("127.0.0.1", port)) {
                Ok(_) => "udp sent".to_string(),
                Err(e) => format!("udp send refused: {e}"),
            },
            Err(e) => format!("udp refused: {e}"),
        },
        match ("localhost", port).to_socket_addrs() {
            Ok(addresses) => format!("dns resolved localhost: {} addresses", addresses.count()),
            Err(e) => format!("dns refused: {e}"),
        },
    ]
}

/// GETs `url` through wasi:http: `{"status", "body"}` or `{"error"}`.
#[flow]
fn fetch(url: String) -> BTreeMap<String, String> {
    match http::get(&url) {
        Ok((status, body)) => BTreeMap::from([("status".into(), status.to_string()), ("body".into(), body)]),
        Err(error) => BTreeMap::from([("error".into(), error)]),
    }
}

/// Returns a result that is not JSON (written by hand: the SDK cannot).
mod garbage {
    use sluice_sdk::FlowDef;

    /// The flow's definition, as `#[flow]` would write it.
    pub const DEF: FlowDef = FlowDef {
        name: "garbage",
        description: "Returns a result that is not JSON.",
        parameters_schema: || r#"{"type":"object","properties":{}}"#.to_string(),
        invoke: |_| Ok("{\"half\": an object, no".to_string()),
    };
}

sluice_sdk::export_flows! {
    flows: [shout, burn, fork_bomb, read_files, read_env, open_sockets, fetch, garbage],
    tasks: [burn_forever, fork],
}
