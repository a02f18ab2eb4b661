//! IP addresses a guest may not reach by name alone, and networks a grant
//! may name. Pure code.
//!
//! An address is *public* unless it falls in one of the special ranges
//! below. A granted host name reaches the public addresses it resolves to,
//! never the others: reaching loopback, a private network, a link-local
//! service (such as a cloud's metadata service at 169.254.169.254) and the
//! like takes a grant that names the address or a network holding it. IPv6
//! forms that carry an IPv4 address (v4-mapped, NAT64, 6to4) are judged by
//! the IPv4 address they carry.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// `0.0.0.0`, `::`: on most systems a connection to it reaches this host.
    Unspecified,
    /// `127.0.0.0/8`, `::1`: this host.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `100.64.0.0/10`, a provider's internal network.
    SharedNat,
    /// `169.254.0.0/16`, `fe80::/10`: the local link, metadata services included.
    LinkLocal,
    /// `fc00::/7`, and the retired site-local `fec0::/10`.
    UniqueLocal,
    /// `224.0.0.0/4`, `255.255.255.255`, `ff00::/8`.
    Multicast,
    /// Any other range set aside (documentation, benchmarking, `0.0.0.0/8`,
    /// `240.0.0.0/4`, Teredo, IPv4-compatible IPv6).
    Reserved,
}

impl fmt::Display for Special {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Special::Unspecified => "unspecified",
            Special::Loopback => "loopback",
            Special::Private => "private",
            Special::SharedNat => "shared (carrier-grade NAT)",
            Special::LinkLocal => "link-local",
            Special::UniqueLocal => "unique-local",
            Special::Multicast => "multicast or broadcast",
            Special::Reserved => "reserved",
        })
    }
}

/// An IPv4 address written as IPv6 is the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// What kind of special address `ip` is; `None` when it is public.
pub fn special(ip: IpAddr) -> Option<Special> {
    match canonical(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<Special> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => Special::Unspecified,
        (127, ..) => Special::Loopback,
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => Special::Private,
        (100, 64..=127, _) => Special::SharedNat,
        (169, 254, _) => Special::LinkLocal,
        _ if ip.is_multicast() || ip.is_broadcast() => Special::Multicast,
        // This network, IETF assignments, documentation, benchmarking, future use.
        (0, ..) | (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (198, 18..=19, _) | (240..=255, ..) => {
            Special::Reserved
        }
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<Special> {
    let segments = ip.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    Some(match segments {
        _ if ip.is_unspecified() => Special::Unspecified,
        _ if ip.is_loopback() => Special::Loopback,
        // NAT64 (well-known and local-use prefixes) carries the IPv4 address in its last 32 bits.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] | [0x64, 0xff9b, 1, _, _, _, high, low] => {
            return special_v4(embedded(high, low));
        }
        // 6to4 carries it right after the prefix.
        [0x2002, high, low, ..] => return special_v4(embedded(high, low)),
        // IPv4-compatible (deprecated): `::a.b.c.d`.
        [0, 0, 0, 0, 0, 0, ..] => Special::Reserved,
        [first, ..] if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 => Special::UniqueLocal,
        [first, ..] if first & 0xffc0 == 0xfe80 => Special::LinkLocal,
        [first, ..] if first & 0xff00 == 0xff00 => Special::Multicast,
        // Teredo, documentation, discard-only.
        [0x2001, 0, ..] | [0x2001, 0xdb8, ..] | [0x100, 0, 0, 0, ..] => Special::Reserved,
        _ => return None,
    })
}

/// An address or a network of addresses (`10.0.0.0/8`, `fd00::/8`), as a
/// grant names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `ADDRESS` or `ADDRESS/PREFIX`; `None` when it is neither.
    /// An address with host bits set under its prefix is refused, so a typo
    /// like `10.0.0.1/8` does not silently grant all of `10.0.0.0/8`.
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let base = canonical(address.parse::<IpAddr>().ok()?);
        let width = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(prefix) => match prefix.parse::<u8>() {
                Ok(prefix) if prefix <= width => prefix,
                _ => return Some(Err(format!("the prefix length is not 0-{width}"))),
            },
        };
        let network = Self { base, prefix };
        if network.masked(base) != bits(base) {
            return Some(Err(format!("`{text}` has bits set past its /{prefix} prefix")));
        }
        Some(Ok(network))
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.base.is_ipv4() && self.masked(ip) == bits(self.base)
    }

    /// Whether every address of `other` is in this network.
    pub fn contains_network(&self, other: &Network) -> bool {
        other.prefix >= self.prefix && self.contains(other.base)
    }

    /// Whether it is one address rather than a range.
    pub fn is_single(&self) -> bool {
        self.prefix == if self.base.is_ipv4() { 32 } else { 128 }
    }

    fn masked(&self, ip: IpAddr) -> u128 {
        let width: u32 = if ip.is_ipv4() { 32 } else { 128 };
        let host_bits = width - u32::from(self.prefix);
        let mask = if host_bits >= 128 { 0 } else { u128::MAX << host_bits };
        bits(ip) & mask
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() { write!(f, "{}", self.base) } else { write!(f, "{}/{}", self.base, self.prefix) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<Special> {
        special(text.parse().unwrap())
    }

    #[test]
    fn public_addresses_are_not_special() {
        for public in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "169.253.255.255", "2606:4700::1111"] {
            assert_eq!(kind(public), None, "{public}");
        }
    }

    #[test]
    fn loopback_private_and_link_local_are_special_in_both_families() {
        let cases = [
            ("0.0.0.0", Special::Unspecified),
            ("::", Special::Unspecified),
            ("127.0.0.1", Special::Loopback),
            ("127.255.255.254", Special::Loopback),
            ("::1", Special::Loopback),
            ("10.1.2.3", Special::Private),
            ("172.16.0.1", Special::Private),
            ("172.31.255.255", Special::Private),
            ("192.168.1.1", Special::Private),
            ("100.64.0.1", Special::SharedNat),
            ("169.254.169.254", Special::LinkLocal),
            ("fe80::1", Special::LinkLocal),
            ("fd00:ec2::254", Special::UniqueLocal),
            ("fc00::1", Special::UniqueLocal),
            ("fec0::1", Special::UniqueLocal),
            ("224.0.0.1", Special::Multicast),
            ("255.255.255.255", Special::Multicast),
            ("ff02::1", Special::Multicast),
            ("0.1.2.3", Special::Reserved),
            ("240.0.0.1", Special::Reserved),
            ("192.0.2.10", Special::Reserved),
            ("2001:db8::1", Special::Reserved),
            ("2001:0:4136:e378::1", Special::Reserved),
            ("::7f00:1", Special::Reserved),
        ];
        for (address, expected) in cases {
            assert_eq!(kind(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn ipv6_forms_carrying_an_ipv4_address_are_judged_by_it() {
        assert_eq!(kind("::ffff:127.0.0.1"), Some(Special::Loopback));
        assert_eq!(kind("::ffff:169.254.169.254"), Some(Special::LinkLocal));
        assert_eq!(kind("::ffff:8.8.8.8"), None);
        assert_eq!(kind("64:ff9b::a00:1"), Some(Special::Private), "NAT64 of 10.0.0.1");
        assert_eq!(kind("64:ff9b::808:808"), None, "NAT64 of 8.8.8.8");
        assert_eq!(kind("64:ff9b:1::7f00:1"), Some(Special::Loopback), "local-use NAT64 of 127.0.0.1");
        assert_eq!(kind("2002:c0a8:101::1"), Some(Special::Private), "6to4 of 192.168.1.1");
        assert_eq!(kind("2002:808:808::1"), None, "6to4 of 8.8.8.8");
        assert_eq!(canonical("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn networks_contain_their_addresses_and_subnetworks() {
        let net = |text: &str| Network::parse(text).unwrap().unwrap();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(net("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("127.0.0.1").contains(ip("::ffff:127.0.0.1")), "a v4-mapped address is the IPv4 address");
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(!net("fd00::/8").contains(ip("10.0.0.1")), "families never mix");
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(net("::/0").contains(ip("::1")));
        assert!(net("10.0.0.0/8").contains_network(&net("10.1.0.0/16")));
        assert!(!net("10.1.0.0/16").contains_network(&net("10.0.0.0/8")));
        assert!(net("127.0.0.1").is_single() && !net("10.0.0.0/8").is_single());
        assert_eq!(net("::ffff:10.0.0.1").to_string(), "10.0.0.1");
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
    }

    #[test]
    fn malformed_networks_say_what_is_wrong() {
        assert!(Network::parse("example.com").is_none(), "not an address at all");
        assert!(Network::parse("10.0.0.0/33").unwrap().unwrap_err().contains("0-32"));
        assert!(Network::parse("10.0.0.1/8").unwrap().unwrap_err().contains("past its /8 prefix"));
        assert!(Network::parse("10.0.0.0/x").unwrap().is_err());
    }
}
