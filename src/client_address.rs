//! This host's address, as the Java client picks it for message ids and the client id
//! (`UtilAll.getIP`): the first IPv4 address that is not loopback, `0.x` or link-local,
//! preferring a public one over a private (10/8, 172.16/12, 192.168/16) one; IPv6 (not
//! loopback, not link-local) only when there is no IPv4 address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address to stamp ids with: `configured`, else this host's as Java picks it, else
/// 127.0.0.1 (a host with loopback only).
pub(crate) fn client_ip(configured: Option<IpAddr>) -> IpAddr {
    configured
        .or_else(|| {
            let addrs: Vec<IpAddr> = if_addrs::get_if_addrs()
                .map(|list| list.into_iter().map(|i| i.ip()).collect())
                .unwrap_or_default();
            pick(&addrs)
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn usable_v4(ip: &Ipv4Addr) -> bool {
    let first = ip.octets()[0];
    !ip.is_loopback() && !ip.is_link_local() && first != 0 && first < 224
}

fn private_v4(ip: &Ipv4Addr) -> bool {
    ip.is_private()
}

fn usable_v6(ip: &Ipv6Addr) -> bool {
    !ip.is_loopback() && !ip.is_unspecified() && (ip.segments()[0] & 0xffc0) != 0xfe80
}

/// Java's choice among `addrs` (in interface order).
pub(crate) fn pick(addrs: &[IpAddr]) -> Option<IpAddr> {
    let v4: Vec<Ipv4Addr> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v4) if usable_v4(v4) => Some(*v4),
            _ => None,
        })
        .collect();
    if let Some(public) = v4.iter().find(|ip| !private_v4(ip)) {
        return Some(IpAddr::V4(*public));
    }
    if let Some(private) = v4.first() {
        return Some(IpAddr::V4(*private));
    }
    addrs.iter().find_map(|a| match a {
        IpAddr::V6(v6) if usable_v6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn picks_like_util_all_get_ip() {
        assert_eq!(pick(&[ip("127.0.0.1")]), None);
        assert_eq!(
            pick(&[ip("127.0.0.1"), ip("169.254.1.2"), ip("10.1.2.3")]),
            Some(ip("10.1.2.3"))
        );
        assert_eq!(
            pick(&[ip("10.1.2.3"), ip("192.0.2.2"), ip("8.8.8.8")]),
            Some(ip("192.0.2.2")),
            "the first public one (192.0.2.0/24 is not private)"
        );
        assert_eq!(
            pick(&[ip("::1"), ip("fe80::1"), ip("2001:db8::5"), ip("127.0.0.1")]),
            Some(ip("2001:db8::5")),
            "IPv6 only without IPv4"
        );
        assert_eq!(
            pick(&[ip("2001:db8::5"), ip("172.20.0.9")]),
            Some(ip("172.20.0.9"))
        );
        assert_eq!(client_ip(Some(ip("10.9.9.9"))), ip("10.9.9.9"));
    }
}
