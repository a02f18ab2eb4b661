//! The outbound HTTP rules of a run, pure: whether a guest's request is
//! allowed by its deployment's grants, and which of the addresses its host
//! name resolved to it may connect to. The sandbox applies the second check
//! to the very address it connects to (`sandbox::egress`), so a name that
//! resolves differently later (DNS rebinding) gains nothing.

use crate::core::address::{Special, canonical, special};
use crate::core::grants::HostPattern;
use std::net::{IpAddr, SocketAddr};

/// Whether a request naming `host` (as in the URL: a name, an IPv4 address
/// or a bracketed IPv6 address) on `port` is allowed; else the warning for
/// the run's log.
pub fn check_request(grants: &[HostPattern], host: &str, port: u16) -> Result<(), String> {
    if grants.iter().any(|grant| grant.allows(host, port)) {
        return Ok(());
    }
    let mut warning =
        format!("outbound HTTP to `{host}:{port}` denied: it is not in this deployment's allow_hosts grant");
    if grants.iter().any(|grant| grant.names(host) && grant.web_ports_only()) {
        warning.push_str(&format!(
            " (an entry without a port covers ports 80 and 443 only; grant `{host}:{port}` or `{host}:*`)"
        ));
    }
    Err(warning)
}

/// Whether the request may connect to `address`: a public address, or a
/// special one (loopback, private, link-local…) that a grant names itself.
pub fn check_address(grants: &[HostPattern], address: SocketAddr) -> Result<(), Special> {
    let ip = canonical(address.ip());
    match special(ip) {
        None => Ok(()),
        Some(_) if grants.iter().any(|grant| grant.reaches_address(ip, address.port())) => Ok(()),
        Some(kind) => Err(kind),
    }
}

/// The warning for a request whose host resolved only to refused addresses.
pub fn address_refusal(host: &str, port: u16, refused: IpAddr, kind: Special) -> String {
    let ip = canonical(refused);
    let grant = match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    format!(
        "outbound HTTP to `{host}:{port}` refused: `{host}` resolves to {ip} ({kind}), which a granted name does \
         not reach; only a grant naming the address does, such as --allow-host {grant}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(entries: &[&str]) -> Vec<HostPattern> {
        entries.iter().map(|entry| HostPattern::parse(entry).unwrap()).collect()
    }

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_granted_name_reaches_public_addresses_only() {
        let name = grants(&["api.example.com"]);
        assert!(check_request(&name, "api.example.com", 443).is_ok());
        assert_eq!(check_address(&name, at("93.184.215.14:443")), Ok(()));
        assert_eq!(check_address(&name, at("127.0.0.1:443")), Err(Special::Loopback));
        assert_eq!(check_address(&name, at("169.254.169.254:80")), Err(Special::LinkLocal));
        assert_eq!(check_address(&name, at("10.0.0.5:443")), Err(Special::Private));
        assert_eq!(check_address(&name, at("[fd00::1]:443")), Err(Special::UniqueLocal));
        assert_eq!(check_address(&name, at("0.0.0.0:443")), Err(Special::Unspecified));
        assert_eq!(check_address(&name, at("[::ffff:127.0.0.1]:443")), Err(Special::Loopback));
    }

    #[test]
    fn a_special_address_takes_a_grant_naming_it_on_that_port() {
        let both = grants(&["localhost:8080", "127.0.0.1:8080"]);
        assert!(check_request(&both, "localhost", 8080).is_ok());
        assert_eq!(check_address(&both, at("127.0.0.1:8080")), Ok(()));
        assert_eq!(check_address(&both, at("[::ffff:127.0.0.1]:8080")), Ok(()));
        assert_eq!(check_address(&both, at("[::1]:8080")), Err(Special::Loopback), "::1 is not 127.0.0.1");
        assert_eq!(check_address(&both, at("127.0.0.1:4200")), Err(Special::Loopback), "another port");
        let network = grants(&["db.internal:5432", "10.0.0.0/8:5432"]);
        assert_eq!(check_address(&network, at("10.20.30.40:5432")), Ok(()));
        assert_eq!(check_address(&network, at("192.168.0.1:5432")), Err(Special::Private));
    }

    #[test]
    fn requests_outside_the_grant_are_denied_saying_why() {
        let web = grants(&["127.0.0.1", "api.example.com"]);
        let denied = check_request(&web, "127.0.0.1", 4200).unwrap_err();
        assert!(denied.contains("`127.0.0.1:4200` denied"), "{denied}");
        assert!(denied.contains("covers ports 80 and 443 only; grant `127.0.0.1:4200` or `127.0.0.1:*`"), "{denied}");
        let elsewhere = check_request(&web, "evil.example.com", 443).unwrap_err();
        assert!(!elsewhere.contains("80 and 443"), "{elsewhere}");
        assert!(check_request(&grants(&["localhost:*"]), "127.0.0.1", 80).is_err(), "an address is not a name");
        assert!(check_request(&grants(&["[::1]:8080"]), "[::1]", 8080).is_ok());
    }

    #[test]
    fn the_refusal_names_the_grant_that_would_allow_it() {
        let v4 = address_refusal("localhost", 8080, "127.0.0.1".parse().unwrap(), Special::Loopback);
        assert!(v4.contains("resolves to 127.0.0.1 (loopback)") && v4.ends_with("--allow-host 127.0.0.1:8080"), "{v4}");
        let v6 = address_refusal("internal", 443, "fd00::1".parse().unwrap(), Special::UniqueLocal);
        assert!(v6.ends_with("--allow-host [fd00::1]:443"), "{v6}");
    }
}
