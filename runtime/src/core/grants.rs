//! Capabilities a deployment grants its guests, and the deploy-time check of
//! a component's imports against them. Pure code: the sandbox enforces the
//! same grants at run time.
//!
//! What every guest gets, granted or not: `sluice:flow/*`, and WASI's
//! `cli` (no environment beyond granted secrets, empty stdin, stdout and
//! stderr to the log), `clocks`, `random`, `io`, `filesystem` (with nothing
//! mounted) and `sockets` (every call refused). `wasi:http/*` needs an
//! `allow_hosts` grant; anything else is refused.

use serde::{Deserialize, Serialize};

/// Capabilities granted to a deployment's runs; none by default.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Hosts the guest may call through outbound HTTP (`wasi:http`): `api.example.com` (any
    /// port), `api.example.com:8443` (that port only) or `*.example.com` (its subdomains).
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

/// One entry of `allow_hosts`: a host name or IP, optionally `*.` for its
/// subdomains, optionally a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    subdomains: bool,
    port: Option<u16>,
}

impl HostPattern {
    /// Parses `host`, `host:port` or `*.domain[:port]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = |why: &str| {
            format!(
                "`{text}` is not an allowed host: {why}; write a host name or IP with an optional port, \
                 such as api.example.com, 127.0.0.1:8080 or *.example.com"
            )
        };
        let trimmed = text.trim().to_ascii_lowercase();
        if trimmed.contains("://") || trimmed.contains('/') {
            return Err(refuse("give the host only, without scheme or path"));
        }
        let (rest, subdomains) = match trimmed.strip_prefix("*.") {
            Some(rest) => (rest.to_string(), true),
            None => (trimmed.clone(), false),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => {
                let port =
                    port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| refuse("the port is not 1-65535"))?;
                (host.to_string(), Some(port))
            }
            _ => (rest, None),
        };
        let valid = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        if !valid {
            return Err(refuse("a host has letters, digits, `.` and `-` only"));
        }
        Ok(Self { host, subdomains, port })
    }

    /// Whether every request `other` allows is also allowed by this entry
    /// (a tenant policy's entry covering a deployment's grant): the same
    /// host or a subdomain of a `*.` entry, and this entry's port if it has one.
    pub fn covers(&self, other: &HostPattern) -> bool {
        let port = self.port.is_none() || self.port == other.port;
        let below = |host: &str| host.strip_suffix(&self.host).is_some_and(|prefix| prefix.ends_with('.'));
        let host = match (self.subdomains, other.subdomains) {
            // `*.example.com` covers `*.example.com` and `*.api.example.com`.
            (true, true) => other.host == self.host || below(&other.host),
            (true, false) => below(&other.host),
            (false, false) => other.host == self.host,
            (false, true) => false,
        };
        port && host
    }

    /// Whether a request to `host` on `port` is allowed by this entry.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host_matches = if self.subdomains {
            host.strip_suffix(&self.host).is_some_and(|prefix| prefix.ends_with('.'))
        } else {
            host == self.host
        };
        host_matches && self.port.is_none_or(|p| p == port)
    }
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
        assert!(exact.allows("api.example.com", 443));
        assert!(!exact.allows("evil.com", 443));
        assert!(!exact.allows("x.api.example.com", 443));
        let port = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert!(port.allows("127.0.0.1", 8080));
        assert!(!port.allows("127.0.0.1", 8081));
        let wild = HostPattern::parse("*.example.com").unwrap();
        assert!(wild.allows("a.example.com", 80));
        assert!(!wild.allows("example.com", 80));
        assert!(!wild.allows("badexample.com", 80));
    }

    #[test]
    fn a_policy_entry_covers_the_grants_inside_it() {
        let covers =
            |policy: &str, grant: &str| HostPattern::parse(policy).unwrap().covers(&HostPattern::parse(grant).unwrap());
        assert!(covers("api.example.com", "API.example.com"));
        assert!(covers("api.example.com", "api.example.com:8443"));
        assert!(covers("api.example.com:8443", "api.example.com:8443"));
        assert!(!covers("api.example.com:8443", "api.example.com"), "any port is more than one port");
        assert!(!covers("api.example.com", "example.com"));
        assert!(covers("*.example.com", "a.b.example.com"));
        assert!(covers("*.example.com", "*.example.com"));
        assert!(covers("*.example.com", "*.api.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "evilexample.com"));
        assert!(!covers("api.example.com", "*.api.example.com"));
    }

    #[test]
    fn bad_hosts_and_secret_names_are_refused_with_an_example() {
        for bad in ["https://example.com", "example.com/path", "", "host:0", "host:99999", "a b"] {
            let err = HostPattern::parse(bad).unwrap_err();
            assert!(err.contains("such as api.example.com"), "{bad}: {err}");
        }
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
