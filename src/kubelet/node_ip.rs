//! The node's address. Left to itself, kubelet takes the address its hostname resolves
//! to, else the address of the default route's interface: on a host with several
//! addresses (a management and a cluster network, a VPN) that may not be the one the
//! cluster reaches the node at. kubejoin gives kubelet `--node-ip` when the host has more
//! than one candidate address: the source address of the route to the API server, or,
//! with `[kubelet] node_ip_cidrs`, the host's address in each CIDR (one IPv4 and one IPv6
//! for dual-stack). [`choose`] is pure; [`host_addresses`] and [`route_source`] ask the
//! kernel.

use std::net::IpAddr;

pub use crate::config::Cidr;

/// An address of one of the host's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub interface: String,
    pub ip: IpAddr,
}

/// Whether an address could be the node's: a global unicast address of an interface that
/// is not a container network's.
pub fn candidate(a: &Address) -> bool {
    let global = match a.ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    };
    global && crate::host::link::nodes_own(&a.interface)
}

/// kubelet's `--node-ip`, and why; `Ok(None)`: kubelet's own choice is the right one
/// (one candidate, or no route to the API server from one of them).
pub fn choose(
    addresses: &[Address],
    route_source: Option<IpAddr>,
    cidrs: &[Cidr],
) -> Result<Option<(Vec<IpAddr>, String)>, String> {
    let candidates: Vec<&Address> = addresses.iter().filter(|a| candidate(a)).collect();
    if !cidrs.is_empty() {
        let mut ips = Vec::new();
        for cidr in cidrs {
            let Some(a) = candidates.iter().find(|a| cidr.contains(a.ip)) else {
                let have: Vec<String> = candidates
                    .iter()
                    .map(|a| format!("{} ({})", a.ip, a.interface))
                    .collect();
                return Err(format!(
                    "no address of this host is in {cidr} (node_ip_cidrs); it has {}",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                ));
            };
            ips.push(a.ip);
        }
        let cidrs: Vec<String> = cidrs.iter().map(Cidr::to_string).collect();
        return Ok(Some((
            ips,
            format!("in node_ip_cidrs {}", cidrs.join(", ")),
        )));
    }
    let Some(source) = route_source else {
        return Ok(None);
    };
    let same_family = candidates
        .iter()
        .filter(|a| a.ip.is_ipv4() == source.is_ipv4())
        .count();
    if same_family < 2 || !candidates.iter().any(|a| a.ip == source) {
        return Ok(None);
    }
    Ok(Some((
        vec![source],
        format!("the source address of the route to the API server, of {same_family} on this host"),
    )))
}

/// Whether the node is IPv6 or dual-stack, for its host preparation (before discovery):
/// `node_ip_cidrs` names an IPv6 network, or, without it, the route to the configured API
/// server leaves from an IPv6 address that is not loopback.
pub fn ipv6_node(cidrs: &[Cidr], route_source: Option<IpAddr>) -> bool {
    if !cidrs.is_empty() {
        return cidrs.iter().any(|c| c.network.is_ipv6());
    }
    route_source.is_some_and(|ip| ip.is_ipv6() && !ip.is_loopback())
}

/// The host's interface addresses (getifaddrs).
pub fn host_addresses() -> Vec<Address> {
    let Ok(all) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    all.filter_map(|a| {
        let sa = a.address?;
        let ip = if let Some(v4) = sa.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else {
            IpAddr::V6(sa.as_sockaddr_in6()?.ip())
        };
        Some(Address {
            interface: a.interface_name,
            ip,
        })
    })
    .collect()
}

/// The source address of the kernel's route to `host:port`: a UDP socket connected there
/// (which sends nothing) is bound to it.
pub fn route_source(host: &str, port: u16) -> Option<IpAddr> {
    use std::net::{ToSocketAddrs, UdpSocket};
    let target = (host, port).to_socket_addrs().ok()?.next()?;
    let any = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(interface: &str, ip: &str) -> Address {
        Address {
            interface: interface.into(),
            ip: ip.parse().unwrap(),
        }
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let c6: Cidr = "fd00::/8".parse().unwrap();
        assert!(c6.contains("fd12::1".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "fd00::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn one_candidate_is_left_to_kubelet() {
        let host = [
            a("lo", "127.0.0.1"),
            a("eth0", "192.168.1.10"),
            a("docker0", "172.17.0.1"),
            a("eth0", "fe80::1"),
        ];
        assert_eq!(choose(&host, "192.168.1.10".parse().ok(), &[]), Ok(None));
    }

    #[test]
    fn several_get_the_one_on_the_route_to_the_api_server() {
        let host = [a("eth0", "192.168.1.10"), a("eth1", "10.0.2.15")];
        let (ips, why) = choose(&host, "10.0.2.15".parse().ok(), &[])
            .unwrap()
            .unwrap();
        assert_eq!(ips, ["10.0.2.15".parse::<IpAddr>().unwrap()]);
        assert!(why.contains("route to the API server"), "{why}");
        // The API server on this host's loopback: no route says which.
        assert_eq!(choose(&host, "127.0.0.1".parse().ok(), &[]), Ok(None));
        assert_eq!(choose(&host, None, &[]), Ok(None));
    }

    #[test]
    fn cidrs_choose_one_per_family() {
        let host = [
            a("eth0", "192.168.1.10"),
            a("eth1", "10.0.2.15"),
            a("eth1", "fd00::15"),
        ];
        let cidrs: Vec<Cidr> = ["10.0.0.0/8", "fd00::/8"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        let (ips, _) = choose(&host, None, &cidrs).unwrap().unwrap();
        assert_eq!(
            ips,
            [
                "10.0.2.15".parse::<IpAddr>().unwrap(),
                "fd00::15".parse().unwrap()
            ]
        );
        let e = choose(&host, None, &["172.16.0.0/12".parse().unwrap()]).unwrap_err();
        assert!(
            e.contains("no address of this host is in 172.16.0.0/12"),
            "{e}"
        );
        assert!(e.contains("10.0.2.15 (eth1)"), "{e}");
    }

    #[test]
    fn an_ipv6_node() {
        let v4: Cidr = "10.0.0.0/8".parse().unwrap();
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(ipv6_node(&[v4, v6], None));
        assert!(!ipv6_node(&[v4], Some("fd00::2".parse().unwrap())));
        assert!(ipv6_node(&[], Some("2001:db8::2".parse().unwrap())));
        assert!(!ipv6_node(&[], Some("::1".parse().unwrap())));
        assert!(!ipv6_node(&[], Some("10.0.0.2".parse().unwrap())));
        assert!(!ipv6_node(&[], None));
    }
}
