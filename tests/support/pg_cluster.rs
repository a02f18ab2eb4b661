//! A real PostgreSQL server for tests: one cluster per test process,
//! started on first use (`initdb` + `pg_ctl`) in a fresh temporary folder,
//! listening only on a unix socket in that folder (no TCP port at all), and
//! a database per caller. It stops however the process ends: a guard
//! process holds a pipe from this one, and when the pipe closes (exit,
//! panic, or kill -9 of the test) it stops the server and deletes the
//! folder. Shared by the store suite (`runtime/src/store`), the tests in
//! `tests/` and the benchmarks (`runtime/benches`); it needs only std and
//! tempfile. Tests run it with nothing waiting for the disk; benchmarks
//! with PostgreSQL's default durability (`Cluster::durable`).
//! [`Cluster::start_on`] starts one more cluster that also listens on TCP
//! inside a network namespace, for the multi-host test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running cluster.
pub struct Cluster {
    socket_dir: PathBuf,
    bin: PathBuf,
    /// The TCP address it also listens on, if any.
    #[allow(dead_code)] // only the multi-host test listens on TCP
    tcp: Option<std::net::IpAddr>,
    /// Closing its stdin (when this process ends) stops the server.
    _guard: Child,
    databases: AtomicUsize,
}

/// What a commit waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Tests: `fsync`, `synchronous_commit` and full-page writes off; a
    /// crash of the machine may lose the cluster, which lives for one test
    /// process anyway.
    Off,
    /// Benchmarks: PostgreSQL's defaults, as a real deployment runs it
    /// (every commit flushed to disk before it returns).
    Defaults,
}

const PORT: u16 = 5432;
const SUPERUSER: &str = "sluice";

/// The PostgreSQL server programs: `SLUICE_PG_BIN`, else the newest
/// `/usr/lib/postgresql/N/bin` (Debian's layout), else the PATH.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_default()
}

/// PostgreSQL refuses to run as root: as root, the server runs as `postgres`.
fn as_server_user(program: PathBuf) -> Command {
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("cannot run {what} ({e}): install Debian's `postgresql` package (`make test` does)")
    });
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Where a cluster listens on TCP besides its unix socket.
#[allow(dead_code)] // only the multi-host test listens on TCP
pub struct Tcp {
    /// The network namespace its server runs in (`None`: this one).
    pub netns: Option<String>,
    /// The address it listens on.
    pub address: std::net::IpAddr,
    /// The clients it trusts without a password, as a CIDR (`10.213.0.0/24`).
    pub clients: String,
}

/// `command` run inside network namespace `netns` (`ip netns exec`), if any.
fn in_netns(command: Command, netns: Option<&str>) -> Command {
    let Some(netns) = netns else { return command };
    let mut wrapped = Command::new("ip");
    wrapped.args(["netns", "exec", netns]).arg(command.get_program()).args(command.get_args());
    wrapped
}

impl Cluster {
    /// A cluster of the caller's own, also listening on TCP as `tcp` says;
    /// stopped and deleted when dropped (or when this process ends).
    #[allow(dead_code)] // only the multi-host test listens on TCP
    pub fn start_on(tcp: Tcp) -> Cluster {
        Self::start_with(Some(&tcp), Durability::Off)
    }

    fn start_with(tcp: Option<&Tcp>, durability: Durability) -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("sluice-pg-").tempdir().expect("a temporary folder").keep();
        let data = dir.join("data");
        let _ = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status();
        // The guard first, so the folder goes even if starting fails half-way.
        let stop = format!(
            "cat >/dev/null; {} -D '{}' -m immediate stop >/dev/null 2>&1; rm -rf '{}'",
            shell_words(&as_server_user(bin.join("pg_ctl"))),
            data.display(),
            dir.display()
        );
        let guard = Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the cluster's guard process");
        let mut initdb = as_server_user(bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        run(initdb, "initdb");
        if let Some(tcp) = tcp {
            use std::io::Write;
            let mut hba = std::fs::OpenOptions::new().append(true).open(data.join("pg_hba.conf")).expect("pg_hba.conf");
            writeln!(hba, "host all all {} trust", tcp.clients).expect("writing pg_hba.conf");
        }
        let mut pg_ctl = as_server_user(bin.join("pg_ctl"));
        let listen = tcp.map(|tcp| tcp.address.to_string()).unwrap_or_default();
        let unsafe_speed = match durability {
            Durability::Off => "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            Durability::Defaults => "",
        };
        let options = format!(
            "-c listen_addresses='{listen}' -k {} -p {PORT} {unsafe_speed} -c max_connections=300",
            dir.display()
        );
        pg_ctl
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(dir.join("server.log"))
            .arg("start");
        // The server forks from pg_ctl, so it stays in the namespace pg_ctl ran in.
        run(in_netns(pg_ctl, tcp.and_then(|tcp| tcp.netns.as_deref())), "pg_ctl start");
        Cluster { socket_dir: dir, bin, tcp: tcp.map(|tcp| tcp.address), _guard: guard, databases: AtomicUsize::new(0) }
    }

    /// The cluster of this process, started on first use.
    pub fn shared() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| Cluster::start_with(None, Durability::Off))
    }

    /// A cluster of this process with PostgreSQL's default durability, for
    /// benchmarks: started on first use, separate from `shared`'s.
    #[allow(dead_code)] // the benchmarks' only
    pub fn durable() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| Cluster::start_with(None, Durability::Defaults))
    }

    /// Creates an empty database and returns its URL.
    pub fn new_database(&self) -> String {
        let name = format!("test_{}_{}", std::process::id(), self.databases.fetch_add(1, Ordering::SeqCst));
        let mut createdb = Command::new(self.bin.join("createdb"));
        createdb.arg("-h").arg(&self.socket_dir).args(["-p", &PORT.to_string(), "-U", SUPERUSER, &name]);
        run(createdb, "createdb");
        self.url(&name)
    }

    /// Runs `sql` with `psql` on the database at `url`; its output, unaligned and without headers.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-d", url, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("running psql");
        assert!(output.status.success(), "psql failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        // The socket folder as the host, percent-encoded: a host that starts with `/` is a socket folder.
        let host = self.socket_dir.display().to_string().replace('/', "%2F");
        format!("postgresql://{SUPERUSER}@{host}:{PORT}/{name}")
    }
}

impl Cluster {
    /// The URL of database `name` over TCP (for clients on other hosts).
    #[allow(dead_code)] // only the multi-host test listens on TCP
    pub fn tcp_url(&self, name: &str) -> String {
        let address = self.tcp.expect("a cluster started with `start_on`");
        format!("postgresql://{SUPERUSER}@{address}:{PORT}/{name}")
    }
}

/// A command line as `sh` reads it (arguments single-quoted).
fn shell_words(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| format!("'{}'", word.to_string_lossy().replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}
