//! The parts of a Sluice installation, each started on a host of
//! `support/hosts.rs`: moto (the S3 emulator) holding the artifacts, `sluice
//! server` and `sluice worker` processes with homes of their own, and load
//! clients (`support/load_client.py`) creating runs through the servers.
//! Every process is killed (SIGKILL) when its handle is dropped.

use crate::hosts::Host;
use crate::support::{Process, eventually, repo, target_dir};
use serde_json::Value;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bucket the artifacts go to.
pub const BUCKET: &str = "sluice-multi-host";

/// moto on a host of its own, with [`BUCKET`] in it.
pub struct ObjectStore {
    _process: PidGuard,
    /// Its S3 endpoint, e.g. `http://10.213.0.11:9000`.
    pub endpoint: String,
}

impl ObjectStore {
    /// Installs moto (outside any namespace: it comes from PyPI) and starts it on `host`.
    pub fn start(host: &Host) -> ObjectStore {
        let script = repo().join("tests/s3/start-moto.sh");
        let installed = Command::new("bash").arg(&script).arg("--install").status().expect("running start-moto.sh");
        assert!(installed.success(), "installing moto failed");
        let port = host.port(9000);
        let output = host
            .command("bash")
            .arg(&script)
            .args([&port.to_string(), &host.ip.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .expect("starting moto");
        assert!(output.status.success(), "start-moto.sh failed");
        let pid: u32 = String::from_utf8_lossy(&output.stdout).trim().parse().expect("start-moto.sh prints a pid");
        // `start-moto.sh` has exited: moto is not our child, so it is killed by pid.
        let process = PidGuard::new(pid);
        eventually(60, "moto to listen", || host.accepts(host.ip, port).then_some(()));
        let endpoint = format!("http://{}:{port}", host.ip);
        // moto takes unsigned requests: a bare PUT makes the bucket.
        let create = "import sys, urllib.request\n\
                      urllib.request.urlopen(urllib.request.Request(sys.argv[1], method='PUT', data=b''), timeout=10)";
        let made = host.command("python3").args(["-c", create, &format!("{endpoint}/{BUCKET}")]).status().unwrap();
        assert!(made.success(), "creating bucket {BUCKET} on moto at {endpoint}");
        ObjectStore { _process: process, endpoint }
    }

    /// The variables that point `object_store` (servers and workers) at it.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("SLUICE_STORE_URL", format!("s3://{BUCKET}/artifacts")),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }
}

/// Kills process `pid` (not our child) when dropped, or when this process
/// dies: a guard process kills it once the pipe from us closes.
struct PidGuard {
    guard: std::process::Child,
}

impl PidGuard {
    fn new(pid: u32) -> PidGuard {
        let guard = Command::new("sh")
            .args(["-c", &format!("cat >/dev/null; kill -9 {pid}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting a kill guard");
        PidGuard { guard }
    }
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        drop(self.guard.stdin.take());
        let _ = self.guard.wait();
    }
}

/// What every `sluice` process of the installation shares.
#[derive(Clone)]
pub struct Installation {
    /// `SLUICE_DATABASE_URL` as the servers reach it.
    pub database_url: String,
    /// The object store's variables.
    pub store_env: Vec<(String, String)>,
    /// The servers' shared secrets key.
    pub secrets_key: PathBuf,
}

/// A `sluice server` on a host, with the lines it printed after its address.
pub struct Server {
    /// The process: kill it to kill the server.
    pub process: Process,
    /// Its base URL, e.g. `http://10.213.0.12:4200`.
    pub url: String,
    /// Its home (where it wrote its admin token).
    pub home: PathBuf,
    /// What it prints on stdout after its first line.
    pub lines: Receiver<String>,
}

impl Installation {
    fn sluice(&self, host: &Host, home: &std::path::Path) -> Command {
        let mut command = host.command(env!("CARGO_BIN_EXE_sluice"));
        command
            .env("SLUICE_HOME", home)
            .env("SLUICE_CACHE_DIR", target_dir().join("test-compile-cache"))
            .env_remove("SLUICE_API_URL")
            .env_remove("SLUICE_API_TOKEN")
            .env_remove("SLUICE_DATABASE_URL")
            .envs(self.store_env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Starts `sluice server` on `host` at `port` with `home`, no embedded
    /// worker, and `args`; returns once it listens.
    pub fn server(&self, host: &Host, port: u16, home: PathBuf, args: &[&str]) -> Server {
        let mut child = self
            .sluice(host, &home)
            .env("SLUICE_DATABASE_URL", &self.database_url)
            .env("SLUICE_SECRETS_KEY_FILE", &self.secrets_key)
            .args(["server", "--host", &host.ip.to_string(), "--port", &port.to_string(), "--workers", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting sluice server");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let process = Process { child };
        let first = lines.next().expect("the server prints its address").expect("a line");
        let url = format!("http://{}:{port}", host.ip);
        assert!(first.contains(&url), "the server on {} says {first}", host.name);
        let (send, received) = channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Server { process, url, home, lines: received }
    }

    /// Starts `sluice worker` on `host`, named `name`, against `server_url`;
    /// it fetches artifacts from the object store itself.
    pub fn worker(&self, host: &Host, home: PathBuf, name: &str, server_url: &str, token: &str) -> Process {
        let child = self
            .sluice(host, &home)
            .args(["worker", "--api", server_url, "--name", name, "--heartbeat", "1", "--limit", "4"])
            .arg("--store-url")
            .arg(&self.store_env.iter().find(|(k, _)| k == "SLUICE_STORE_URL").expect("a store URL").1)
            .env("SLUICE_API_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting sluice worker");
        Process { child }
    }

    /// The `sluice` CLI on `host`, talking to `server_url` with `token`.
    pub fn cli(&self, host: &Host, home: &std::path::Path, server_url: &str, token: &str) -> Command {
        let mut command = self.sluice(host, home);
        command.env("SLUICE_API_URL", server_url).env("SLUICE_API_TOKEN", token);
        command
    }
}

impl Server {
    /// The admin token it made on its first start.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.home.join("admin-token")).expect("the server's admin token").trim().to_string()
    }

    /// Whether it has said so far that it took the scheduler and crash detection.
    pub fn has_said_it_leads(&self) -> bool {
        self.lines.try_iter().any(|line| line.contains("runs the scheduler and crash detection"))
    }

    /// Whether it says, within `within`, that it took the scheduler and crash detection.
    pub fn says_it_leads(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains("runs the scheduler and crash detection") => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

/// What the load clients were told, so far.
#[derive(Default, Debug)]
pub struct LoadLog {
    /// Run ids acknowledged (2xx with the run), with the server that answered.
    pub acknowledged: Vec<(String, String)>,
    /// Requests that got no acknowledgement: the server and what happened.
    pub failed: Vec<(String, String)>,
}

/// Load clients (`support/load_client.py`), one process per host.
pub struct Load {
    clients: Vec<Process>,
    /// Filled in as their answers arrive.
    pub log: Arc<Mutex<LoadLog>>,
}

impl Load {
    /// Starts a client on each of `hosts`, each creating `count` runs of
    /// `deployment` with `threads` threads, through `servers` in turn.
    pub fn start(hosts: &[&Host], servers: &[String], token: &str, deployment: &str, count: usize) -> Load {
        let log: Arc<Mutex<LoadLog>> = Arc::default();
        let script = repo().join("tests/support/load_client.py");
        let mut clients = Vec::new();
        for (index, host) in hosts.iter().enumerate() {
            let mut command = host.command("python3");
            command.arg(&script);
            // Each client starts with another server.
            for turn in 0..servers.len() {
                command.args(["--server", &servers[(index + turn) % servers.len()]]);
            }
            let mut child = command
                .args(["--token", token, "--deployment", deployment, "--count", &count.to_string(), "--threads", "4"])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("starting a load client");
            let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
            let log = log.clone();
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    let answer: Value = serde_json::from_str(&line).expect("a JSON line from the load client");
                    let server = answer["server"].as_str().unwrap_or("").to_string();
                    let mut log = log.lock().unwrap();
                    match answer["id"].as_str() {
                        Some(id) if answer["ok"] == true => log.acknowledged.push((id.to_string(), server)),
                        _ => log.failed.push((server, answer["error"].as_str().unwrap_or("?").to_string())),
                    }
                }
            });
            clients.push(Process { child });
        }
        Load { clients, log }
    }

    /// How many runs were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.log.lock().unwrap().acknowledged.len()
    }

    /// Waits up to `within` for every client to finish; each must exit 0.
    pub fn wait(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        for client in &mut self.clients {
            loop {
                if let Some(status) = client.child.try_wait().unwrap() {
                    assert!(status.success(), "a load client failed ({status}); last answers: {:?}", self.log);
                    break;
                }
                assert!(Instant::now() < deadline, "the load clients did not finish within {within:?}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
