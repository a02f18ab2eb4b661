//! Capabilities a deployment grants its guests, and the deploy-time check of
//! a component's imports against them. Pure code: the sandbox enforces the
//! same grants at run time.
//!
//! What every guest gets, granted or not: `sluice:flow/*`, and WASI's
//! `cli` (no environment beyond granted secrets, empty stdin, stdout and
//! stderr to the log), `clocks`, `random`, `io`, `filesystem` (with nothing
//! mounted) and `sockets` (every call refused). `wasi:http/*` needs an
//! `allow_hosts` grant; anything else is refused.

use crate::core::address::Network;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Capabilities granted to a deployment's runs; none by default.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Hosts the guest may call through outbound HTTP (`wasi:http`): `api.example.com` (ports 80
    /// and 443), `api.example.com:8443` (that port only), `api.example.com:*` (every port),
    /// `*.example.com` (its subdomains), or an IP address or network (`10.0.0.0/8:8080`), which
    /// is what it takes to reach loopback, private or link-local addresses.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Names of secrets (`sluice secret set NAME`) exposed to the guest as environment
    /// variables of the same name.
    #[serde(default)]
    pub secrets: Vec<String>,
}

impl Grants {
    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.allow_hosts.is_empty() && self.secrets.is_empty()
    }

    /// Checks every entry, so a typo is refused at deploy time, not found at run time.
    pub fn validate(&self) -> Result<(), String> {
        for host in &self.allow_hosts {
            HostPattern::parse(host)?;
        }
        for name in &self.secrets {
            check_secret_name(name)?;
        }
        Ok(())
    }

    /// The allowed hosts, parsed.
    pub fn host_patterns(&self) -> Result<Vec<HostPattern>, String> {
        self.allow_hosts.iter().map(|h| HostPattern::parse(h)).collect()
    }
}

/// One entry of `allow_hosts`: what a request may name (a host name, all
/// subdomains of one, or an IP address or network) and on which ports.
///
/// A name reaches only the public addresses it resolves to (see
/// [`crate::core::address`]); loopback, private, link-local and other
/// special addresses are reached only through an entry naming the address
/// or its network. Without a port an entry covers the web ports 80 and 443;
/// `:PORT` names one port and `:*` every port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    target: Target,
    ports: Ports,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A host name, or with `subdomains` every name below it.
    Name { host: String, subdomains: bool },
    /// An IP address or network.
    Network(Network),
}

/// The ports an entry covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ports {
    /// No port written: 80 and 443.
    Web,
    /// `:PORT`.
    One(u16),
    /// `:*`.
    Any,
}

impl Ports {
    fn allow(self, port: u16) -> bool {
        match self {
            Ports::Web => port == 80 || port == 443,
            Ports::One(one) => one == port,
            Ports::Any => true,
        }
    }

    fn cover(self, other: Ports) -> bool {
        match (self, other) {
            (Ports::Any, _) => true,
            (Ports::Web, Ports::Web) => true,
            (_, Ports::One(port)) => self.allow(port),
            _ => false,
        }
    }
}

impl HostPattern {
    /// Parses `host`, `*.domain`, an IPv4 or IPv6 address, or a network
    /// (`10.0.0.0/8`), each optionally with `:PORT` or `:*` (an IPv6 address
    /// with a port in brackets: `[fd00::1]:8080`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = |why: &str| {
            format!(
                "`{text}` is not an allowed host: {why}; write a host name, `*.` and a domain, or an IP address \
                 or network, each with an optional `:PORT` or `:*` (none means ports 80 and 443), such as \
                 api.example.com, *.example.com, 127.0.0.1:8080, 10.0.0.0/8:* or [fd00::1]:443"
            )
        };
        let trimmed = text.trim().to_ascii_lowercase();
        if trimmed.contains("://") {
            return Err(refuse("give the host only, without scheme or path"));
        }
        let (host, port) = split_port(&trimmed).map_err(|why| refuse(&why))?;
        let ports = match port {
            None => Ports::Web,
            Some("*") => Ports::Any,
            Some(port) => Ports::One(
                port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| refuse("the port is not 1-65535"))?,
            ),
        };
        if let Some(network) = Network::parse(host) {
            return Ok(Self { target: Target::Network(network.map_err(|why| refuse(&why))?), ports });
        }
        if host.contains('/') {
            return Err(refuse("give the host only, without scheme or path"));
        }
        let (host, subdomains) = match host.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (host, false),
        };
        let valid = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        if !valid {
            return Err(refuse("a host name has letters, digits, `.` and `-` only"));
        }
        Ok(Self { target: Target::Name { host: host.to_string(), subdomains }, ports })
    }

    /// Whether every request `other` allows is also allowed by this entry
    /// (a tenant policy's entry covering a deployment's grant): the same
    /// name or a subdomain of a `*.` entry, or an address or network inside
    /// this network; and ports this entry covers.
    pub fn covers(&self, other: &HostPattern) -> bool {
        let target = match (&self.target, &other.target) {
            (Target::Name { host, subdomains }, Target::Name { host: other, subdomains: other_subdomains }) => {
                let below = |name: &str| name.strip_suffix(host.as_str()).is_some_and(|prefix| prefix.ends_with('.'));
                match (subdomains, other_subdomains) {
                    // `*.example.com` covers `*.example.com` and `*.api.example.com`.
                    (true, true) => other == host || below(other),
                    (true, false) => below(other),
                    (false, false) => other == host,
                    (false, true) => false,
                }
            }
            (Target::Network(network), Target::Network(other)) => network.contains_network(other),
            _ => false,
        };
        target && self.ports.cover(other.ports)
    }

    /// Whether a request naming `host` (a name or an IP address, as in the
    /// URL) on `port` is allowed by this entry. Where it may connect is
    /// decided by [`HostPattern::reaches_address`] once the name is resolved.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.names(host) && self.ports.allow(port)
    }

    /// Whether this entry names `host` at all, whatever the port.
    pub fn names(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
        match &self.target {
            Target::Name { host: name, subdomains: true } => {
                host.strip_suffix(name.as_str()).is_some_and(|prefix| prefix.ends_with('.'))
            }
            Target::Name { host: name, subdomains: false } => host == *name,
            Target::Network(network) => host.parse::<IpAddr>().is_ok_and(|ip| network.contains(ip)),
        }
    }

    /// Whether this entry names `ip` itself (an address or network entry
    /// holding it) on `port`: what it takes to reach a special address.
    pub fn reaches_address(&self, ip: IpAddr, port: u16) -> bool {
        matches!(&self.target, Target::Network(network) if network.contains(ip)) && self.ports.allow(port)
    }

    /// Whether the entry covers ports 80 and 443 only (it was written without a port).
    pub fn web_ports_only(&self) -> bool {
        self.ports == Ports::Web
    }
}

/// Splits `host[:port]`, `[v6][:port]` or a bare IPv6 address (no port).
fn split_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("a `[` has no closing `]`")?;
        return match after {
            "" => Ok((host, None)),
            _ => after.strip_prefix(':').map(|port| (host, Some(port))).ok_or_else(|| "after `]` comes `:PORT`".into()),
        };
    }
    if text.matches(':').count() > 1 {
        // An IPv6 address without brackets cannot carry a port.
        return Ok((text, None));
    }
    Ok(match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    })
}

/// Secret names are environment variable names: a letter or `_`, then letters, digits, `_`.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid secret name: it becomes an environment variable, so use letters, digits and `_`, \
             not starting with a digit, such as API_TOKEN"
        ))
    }
}

/// A run's grants made ready for the sandbox: secret values included. It
/// goes from the server to the worker that runs the run and nowhere else;
/// its `Debug` shows secret names only.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ResolvedGrants {
    /// Hosts outbound HTTP may reach.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Environment variables of the guest: the granted secrets, each a `[name, value]` pair.
    #[serde(default)]
    #[schema(value_type = Vec<Vec<String>>)]
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for ResolvedGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ResolvedGrants").field("allow_hosts", &self.allow_hosts).field("env", &names).finish()
    }
}

/// WASI packages every guest is linked against, granted or not.
const ALWAYS_PROVIDED: &[&str] =
    ["wasi:cli/", "wasi:clocks/", "wasi:random/", "wasi:io/", "wasi:filesystem/", "wasi:sockets/", "sluice:flow/"]
        .as_slice();

/// Checks a component's imports against what is granted: an import that is
/// neither always provided nor granted is refused, naming it and the grant
/// that would allow it.
pub fn check_imports(imports: &[String], grants: &Grants) -> Result<(), String> {
    for import in imports {
        if ALWAYS_PROVIDED.iter().any(|prefix| import.starts_with(prefix)) {
            continue;
        }
        if import.starts_with("wasi:http/") {
            if grants.allow_hosts.is_empty() {
                return Err(format!(
                    "the component imports `{import}` (outbound HTTP), which this deployment is not granted; \
                     grant the hosts it may call with `--allow-host HOST` (sluice.yaml: `grants: {{allow_hosts: [HOST]}}`, \
                     API: `\"grants\": {{\"allow_hosts\": [\"HOST\"]}}`)"
                ));
            }
            continue;
        }
        return Err(format!(
            "the component imports `{import}`, which Sluice does not provide to flows and no grant allows; \
             a flow may import sluice:flow, WASI 0.2 cli, clocks, random, io, filesystem, sockets, and wasi:http \
             with an allow_hosts grant"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_hosts_ports_and_subdomains() {
        let exact = HostPattern::parse("API.example.com").unwrap();
        assert!(exact.allows("api.example.com", 443) && exact.allows("api.example.com.", 80));
        assert!(!exact.allows("evil.com", 443));
        assert!(!exact.allows("x.api.example.com", 443));
        let port = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert!(port.allows("127.0.0.1", 8080));
        assert!(!port.allows("127.0.0.1", 8081));
        assert!(!port.allows("localhost", 8080), "an address entry does not name a host name");
        let wild = HostPattern::parse("*.example.com").unwrap();
        assert!(wild.allows("a.example.com", 80));
        assert!(!wild.allows("example.com", 80));
        assert!(!wild.allows("badexample.com", 80));
    }

    #[test]
    fn an_entry_without_a_port_covers_the_web_ports_only() {
        let web = HostPattern::parse("api.example.com").unwrap();
        assert!(web.allows("api.example.com", 80) && web.allows("api.example.com", 443));
        assert!(!web.allows("api.example.com", 8080) && !web.allows("api.example.com", 22));
        assert!(web.web_ports_only());
        let every = HostPattern::parse("api.example.com:*").unwrap();
        assert!(every.allows("api.example.com", 8080) && every.allows("api.example.com", 1));
        assert!(!every.web_ports_only());
        let loopback = HostPattern::parse("127.0.0.1").unwrap();
        assert!(loopback.allows("127.0.0.1", 443) && !loopback.allows("127.0.0.1", 4200));
    }

    #[test]
    fn address_and_network_entries_name_addresses() {
        let network = HostPattern::parse("10.0.0.0/8:*").unwrap();
        assert!(network.allows("10.1.2.3", 5432));
        assert!(network.reaches_address("10.1.2.3".parse().unwrap(), 5432));
        assert!(!network.reaches_address("11.0.0.1".parse().unwrap(), 5432));
        let v6 = HostPattern::parse("[fd00::1]:8443").unwrap();
        assert!(v6.allows("[fd00::1]", 8443) && !v6.allows("[fd00::1]", 443));
        assert!(v6.reaches_address("fd00::1".parse().unwrap(), 8443));
        let bare_v6 = HostPattern::parse("::1").unwrap();
        assert!(bare_v6.allows("[::1]", 443));
        let mapped = HostPattern::parse("127.0.0.1:*").unwrap();
        assert!(mapped.reaches_address("::ffff:127.0.0.1".parse().unwrap(), 9), "v4-mapped is the IPv4 address");
        let name = HostPattern::parse("localhost:*").unwrap();
        assert!(!name.reaches_address("127.0.0.1".parse().unwrap(), 80), "a name never reaches a special address");
    }

    #[test]
    fn a_policy_entry_covers_the_grants_inside_it() {
        let covers =
            |policy: &str, grant: &str| HostPattern::parse(policy).unwrap().covers(&HostPattern::parse(grant).unwrap());
        assert!(covers("api.example.com", "API.example.com"));
        assert!(covers("api.example.com", "api.example.com:443"));
        assert!(!covers("api.example.com", "api.example.com:8443"), "no port means 80 and 443");
        assert!(covers("api.example.com:*", "api.example.com:8443"));
        assert!(covers("api.example.com:*", "api.example.com"));
        assert!(covers("api.example.com:8443", "api.example.com:8443"));
        assert!(!covers("api.example.com:8443", "api.example.com"), "two ports are more than one");
        assert!(!covers("api.example.com:443", "api.example.com:*"));
        assert!(!covers("api.example.com", "example.com"));
        assert!(covers("*.example.com", "a.b.example.com"));
        assert!(covers("*.example.com", "*.example.com"));
        assert!(covers("*.example.com", "*.api.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "evilexample.com"));
        assert!(!covers("api.example.com", "*.api.example.com"));
        assert!(covers("10.0.0.0/8:*", "10.1.0.0/16:5432"));
        assert!(covers("127.0.0.1:*", "127.0.0.1:8080"));
        assert!(!covers("127.0.0.1", "127.0.0.1:8080"));
        assert!(!covers("10.1.0.0/16:*", "10.0.0.0/8:*"));
        assert!(!covers("localhost:*", "127.0.0.1:*"), "a name does not cover an address");
        assert!(!covers("127.0.0.1:*", "localhost:*"), "an address does not cover a name");
    }

    #[test]
    fn bad_hosts_and_secret_names_are_refused_with_an_example() {
        for bad in [
            "https://example.com",
            "example.com/path",
            "",
            "host:0",
            "host:99999",
            "host:x",
            "a b",
            "10.0.0.1/8",
            "10.0.0.0/40",
            "[fd00::1",
            "[fd00::1]8080",
        ] {
            let err = HostPattern::parse(bad).unwrap_err();
            assert!(err.contains("such as api.example.com"), "{bad}: {err}");
        }
        assert!(HostPattern::parse("10.0.0.1/8").unwrap_err().contains("bits set past its /8 prefix"));
        assert!(check_secret_name("API_TOKEN").is_ok());
        assert!(check_secret_name("1TOKEN").unwrap_err().contains("such as API_TOKEN"));
        assert!(check_secret_name("A-B").is_err());
    }

    #[test]
    fn imports_are_checked_against_the_grants() {
        let wasi = vec!["wasi:cli/environment@0.2.6".to_string(), "sluice:flow/host@0.1.0".to_string()];
        assert!(check_imports(&wasi, &Grants::default()).is_ok());
        let http = vec!["wasi:http/outgoing-handler@0.2.6".to_string()];
        let err = check_imports(&http, &Grants::default()).unwrap_err();
        assert!(err.contains("`wasi:http/outgoing-handler@0.2.6`") && err.contains("--allow-host"), "{err}");
        let granted = Grants { allow_hosts: vec!["example.com".into()], secrets: vec![] };
        assert!(check_imports(&http, &granted).is_ok());
        let other = vec!["acme:gpu/compute".to_string()];
        assert!(check_imports(&other, &granted).unwrap_err().contains("`acme:gpu/compute`"));
    }
}
