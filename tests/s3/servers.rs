//! The S3-compatible servers `tests/s3_store.rs` runs against, each started on
//! 127.0.0.1 by a script beside this file and stopped when dropped:
//!
//! - moto (`start-moto.sh`): an S3 emulator from PyPI, quick to install;
//! - Garage (`start-garage.sh`): a real object store, built from crates.io
//!   (slow the first time; see README, "Artifact store").

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Which server `SLUICE_S3_TEST_SERVER` names: `moto` (the default) or `garage`.
pub fn chosen() -> Kind {
    match std::env::var("SLUICE_S3_TEST_SERVER").as_deref() {
        Err(_) | Ok("") | Ok("moto") => Kind::Moto,
        Ok("garage") => Kind::Garage,
        Ok(other) => panic!("SLUICE_S3_TEST_SERVER={other} names no test server: use `moto` (the default) or `garage`"),
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Moto,
    Garage,
}

/// A running server with a bucket the credentials may read and write; killed
/// when dropped, so a failed assertion does not leave it running.
pub struct S3Server {
    pub kind: Kind,
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pid: String,
    port: u16,
    log: PathBuf,
    /// Removed on drop: the server's data and metadata (Garage only).
    scratch: Option<PathBuf>,
}

impl S3Server {
    /// Starts the chosen server on a free port with `bucket` in it.
    pub fn start(kind: Kind, bucket: &str) -> Self {
        let server = match kind {
            Kind::Moto => Self::moto(),
            Kind::Garage => Self::garage(bucket),
        };
        server.wait_until_listening(Duration::from_secs(60));
        if let Kind::Moto = kind {
            server.create_bucket_unsigned(bucket);
        }
        server
    }

    fn moto() -> Self {
        let port = free_port();
        let pid = run_script("start-moto.sh", &[&port.to_string()]);
        Self {
            kind: Kind::Moto,
            endpoint: format!("http://127.0.0.1:{port}"),
            region: "us-east-1".into(),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            pid: pid.trim().to_string(),
            port,
            log: PathBuf::from(format!("{}/../target/moto-venv/moto-{port}.log", env!("CARGO_MANIFEST_DIR"))),
            scratch: None,
        }
    }

    /// The script prints `name=value` lines: what it chose and generated.
    fn garage(bucket: &str) -> Self {
        let port = free_port();
        let rpc_port = std::iter::repeat_with(free_port).find(|&other| other != port).unwrap();
        let printed = run_script("start-garage.sh", &[&port.to_string(), &rpc_port.to_string(), bucket]);
        let mut values: HashMap<&str, &str> = printed.lines().filter_map(|line| line.split_once('=')).collect();
        let mut take = |name: &str| {
            values.remove(name).unwrap_or_else(|| panic!("start-garage.sh printed no {name}:\n{printed}")).to_string()
        };
        let scratch = PathBuf::from(take("dir"));
        let server = Self {
            kind: Kind::Garage,
            endpoint: take("endpoint"),
            region: take("region"),
            access_key_id: take("access_key_id"),
            secret_access_key: take("secret_access_key"),
            pid: take("pid"),
            port,
            log: scratch.join("garage.log"),
            scratch: Some(scratch),
        };
        assert_eq!(server.endpoint, format!("http://127.0.0.1:{port}"), "Garage must listen on loopback only");
        server
    }

    /// Whether requests signed with the wrong secret are refused: moto accepts them.
    pub fn checks_signatures(&self) -> bool {
        matches!(self.kind, Kind::Garage)
    }

    /// Fails fast, with the server's log, if it dies instead of listening.
    fn wait_until_listening(&self, patience: Duration) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(self.is_alive(), "{:?} (pid {}) exited on startup:\n{}", self.kind, self.pid, self.log());
            assert!(start.elapsed() < patience, "{:?} did not listen within {patience:?}:\n{}", self.kind, self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn is_alive(&self) -> bool {
        Command::new("kill").args(["-0", &self.pid]).status().is_ok_and(|status| status.success())
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        let path = self.log.display();
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(cannot read {path}: {e})"))
    }

    /// moto accepts unsigned requests, so a bare HTTP PUT creates the bucket
    /// without pulling in an S3 client just for this.
    fn create_bucket_unsigned(&self, bucket: &str) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "creating bucket {bucket}: {response}");
    }
}

impl Drop for S3Server {
    /// Waits (briefly) for the port to close too, so the server is gone when the
    /// test ends. Not `kill -0`: the orphaned server may linger as a zombie.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(scratch) = &self.scratch {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

/// Runs `tests/s3/<script>` and returns what it printed, failing with its stderr.
fn run_script(script: &str, args: &[&str]) -> String {
    let path = format!("{}/../tests/s3/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash").arg(&path).args(args).output().unwrap_or_else(|e| panic!("run {path}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed ({}):\n{stderr}", output.status);
    String::from_utf8(output.stdout).expect("the script prints text")
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
