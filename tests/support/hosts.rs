//! Several hosts on one machine, for tests that need a real network between
//! their parts: each host is a network namespace of its own, joined to the
//! others by a veth pair on a bridge that lives in one more namespace (the
//! hub). Every address is in 10.213.0.0/24 and exists only inside the
//! namespaces made here: the machine's own namespace gets no interface, no
//! address and no route, so nothing a test sends can leave for another
//! network.
//!
//! Making namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN). Where
//! `ip netns add` is refused, [`Network::new`] says so on stderr and falls
//! back to one host: every part then listens on 127.0.0.1 with its own
//! port and its own home, and the test runs the same way.
//! `SLUICE_TEST_NO_NETNS=1` asks for that fallback where namespaces work.
//!
//! Cleanup survives panics and kill -9 of the test: a guard process holds a
//! pipe from this one, and when the pipe closes (drop, exit, or death) it
//! kills every process left in these namespaces and deletes them.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};

/// The private subnet the hosts share (a /24).
pub const SUBNET: &str = "10.213.0.0/24";

/// A host: the namespace it lives in (none in the fallback) and its address.
#[derive(Clone, Debug)]
pub struct Host {
    /// A short name (`server-a`, `worker-1`…).
    pub name: String,
    /// Its network namespace; `None` when namespaces are not available.
    pub netns: Option<String>,
    /// Its address: in [`SUBNET`], or 127.0.0.1 in the fallback.
    pub ip: IpAddr,
}

impl Host {
    /// `program` run on this host (inside its namespace).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// A port to listen on: `preferred` on a host of its own, any free one
    /// when every host shares 127.0.0.1.
    pub fn port(&self, preferred: u16) -> u16 {
        match self.netns {
            Some(_) => preferred,
            None => TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
        }
    }

    /// Whether something on this host accepts TCP connections on `ip:port`
    /// (asked from inside the host, where the address is reachable).
    pub fn accepts(&self, ip: IpAddr, port: u16) -> bool {
        let probe = "import socket, sys\nsocket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()";
        self.command("python3")
            .args(["-c", probe, &ip.to_string(), &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

/// The hosts of one test, removed (with whatever still runs in them) on drop.
pub struct Network {
    hosts: Vec<Host>,
    /// Closing its stdin kills what runs in the namespaces and deletes them.
    guard: Option<Child>,
}

impl Network {
    /// One host per name, each in its own namespace when the machine allows
    /// it; else every host is 127.0.0.1 (said on stderr).
    pub fn new(names: &[&str]) -> Network {
        let prefix = format!("sluice-mh-{}-", std::process::id());
        let hub = format!("{prefix}hub");
        let made = match std::env::var_os("SLUICE_TEST_NO_NETNS") {
            Some(_) => Err("SLUICE_TEST_NO_NETNS is set".to_string()),
            None => ip(&["netns", "add", &hub]),
        };
        match made {
            Ok(()) => {}
            Err(why) => {
                eprintln!(
                    "network namespaces are not available here ({why}): every host runs on 127.0.0.1 with its own \
                     port and home instead"
                );
                let hosts = names
                    .iter()
                    .map(|name| Host { name: name.to_string(), netns: None, ip: IpAddr::V4(Ipv4Addr::LOCALHOST) })
                    .collect();
                return Network { hosts, guard: None };
            }
        }
        let namespaces: Vec<String> =
            std::iter::once(hub.clone()).chain(names.iter().map(|name| format!("{prefix}{name}"))).collect();
        // The guard first, so the hub goes even if a later step fails.
        let cleanup = namespaces
            .iter()
            .map(|ns| format!("ip netns pids {ns} 2>/dev/null | xargs -r kill -9; ip netns del {ns} 2>/dev/null"))
            .collect::<Vec<_>>()
            .join("; ");
        let guard = Command::new("sh")
            .args(["-c", &format!("cat >/dev/null; {cleanup}; true")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the namespaces' guard process");
        let mut network = Network { hosts: Vec::new(), guard: Some(guard) };
        let must = |args: &[&str]| ip(args).unwrap_or_else(|why| panic!("ip {}: {why}", args.join(" ")));
        must(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        must(&["-n", &hub, "link", "set", "br0", "up"]);
        for (index, name) in names.iter().enumerate() {
            let netns = format!("{prefix}{name}");
            let address = Ipv4Addr::new(10, 213, 0, 10 + index as u8);
            let port = format!("h{index}");
            must(&["netns", "add", &netns]);
            must(&["-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &netns]);
            must(&["-n", &hub, "link", "set", &port, "master", "br0", "up"]);
            must(&["-n", &netns, "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
            must(&["-n", &netns, "link", "set", "eth0", "up"]);
            must(&["-n", &netns, "link", "set", "lo", "up"]);
            network.hosts.push(Host { name: name.to_string(), netns: Some(netns), ip: IpAddr::V4(address) });
        }
        network
    }

    /// Whether the hosts are namespaces of their own (else all are 127.0.0.1).
    pub fn namespaced(&self) -> bool {
        self.guard.is_some()
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("no host named {name}"))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            drop(guard.stdin.take());
            let _ = guard.wait();
        }
    }
}

/// Runs `ip ARGS`; its stderr when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let output =
        Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).trim().to_string()) }
}
