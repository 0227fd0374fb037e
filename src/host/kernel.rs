//! Kernel prerequisites of kubelet's networking: the `overlay` and `br_netfilter`
//! modules (`/etc/modules-load.d/kubejoin.conf`, loaded now through
//! systemd-modules-load.service) and forwarding and bridge netfilter sysctls
//! (`/etc/sysctl.d/90-kubejoin.conf`, applied now through `/proc/sys`); on an IPv6 node,
//! IPv6 forwarding with router advertisements still accepted.

pub const MODULES_FILE: &str = "/etc/modules-load.d/kubejoin.conf";
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-kubejoin.conf";
pub const MODULES_LOAD_UNIT: &str = "systemd-modules-load.service";

/// Each module, and a path that exists once its function is in the kernel (as a loaded
/// module or built in).
pub const MODULES: [(&str, &str); 2] = [
    ("overlay", "/sys/module/overlay"),
    (
        "br_netfilter",
        "/proc/sys/net/bridge/bridge-nf-call-iptables",
    ),
];

/// The sysctls kubelet and kube-proxy need, and their values.
pub const SYSCTLS: [(&str, &str); 3] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
];

pub fn modules_file() -> String {
    let mut s = String::from("# Written by kubejoin: kernel modules kubelet's networking needs.\n");
    for (m, _) in MODULES {
        s.push_str(m);
        s.push('\n');
    }
    s
}

/// An IPv6 node's sysctls, in the order they are set: `accept_ra = 2` on each of the
/// node's links that accepts router advertisements now (a link that forwards ignores them
/// at 1, and would lose its RA-learned addresses and default route as they expire), then
/// forwarding. Not `default.accept_ra`: every new link would take it, and pods' veths
/// would then accept router advertisements from pods. A link added later is the
/// administrator's to configure.
pub fn ipv6_sysctls(ra_links: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ra_links
        .iter()
        .map(|link| (link_key(link, "accept_ra"), "2".to_string()))
        .collect();
    out.push(("net.ipv6.conf.all.forwarding".into(), "1".into()));
    out
}

/// `net.ipv6.conf.<link>.<key>`; in sysctl.d's slash form when the link's name has a dot
/// (a VLAN: `eth0.100`), which the dotted form would split.
fn link_key(link: &str, key: &str) -> String {
    if link.contains('.') {
        format!("net/ipv6/conf/{link}/{key}")
    } else {
        format!("net.ipv6.conf.{link}.{key}")
    }
}

/// The file, with `ipv6` ([`ipv6_sysctls`]) after the sysctls every node gets.
pub fn sysctl_file(ipv6: &[(String, String)]) -> String {
    let mut s = String::from("# Written by kubejoin: forwarding and bridge netfilter for pods.\n");
    for (k, v) in SYSCTLS {
        s.push_str(&format!("{k} = {v}\n"));
    }
    if !ipv6.is_empty() {
        s.push_str("# An IPv6 node: forwarding, router advertisements still accepted.\n");
        for (k, v) in ipv6 {
            s.push_str(&format!("{k} = {v}\n"));
        }
    }
    s
}

/// `/proc/sys/...` for a sysctl key, dotted or (sysctl.d's other form) with slashes.
pub fn proc_path(key: &str) -> String {
    if key.contains('/') {
        format!("/proc/sys/{key}")
    } else {
        format!("/proc/sys/{}", key.replace('.', "/"))
    }
}

/// The node's own links that accept router advertisements now (`accept_ra` 1, or 2 as
/// an earlier run left it), read from `/proc/sys/net/ipv6/conf`.
pub fn ra_links() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/sys/net/ipv6/conf") else {
        return Vec::new();
    };
    let mut links: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name != "all" && name != "default" && super::link::nodes_own(name))
        .filter(|name| {
            let path = format!("/proc/sys/net/ipv6/conf/{name}/accept_ra");
            std::fs::read_to_string(path).is_ok_and(|v| matches!(v.trim(), "1" | "2"))
        })
        .collect();
    links.sort();
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files() {
        assert_eq!(
            modules_file(),
            "# Written by kubejoin: kernel modules kubelet's networking needs.\noverlay\nbr_netfilter\n"
        );
        assert!(sysctl_file(&[]).contains("\nnet.ipv4.ip_forward = 1\n"));
        assert!(!sysctl_file(&[]).contains("ipv6"));
        assert_eq!(
            proc_path("net.bridge.bridge-nf-call-iptables"),
            "/proc/sys/net/bridge/bridge-nf-call-iptables"
        );
    }

    #[test]
    fn an_ipv6_node_forwards_and_still_accepts_router_advertisements() {
        let v6 = ipv6_sysctls(&["eth0".into(), "eth0.100".into()]);
        assert_eq!(
            sysctl_file(&v6),
            "# Written by kubejoin: forwarding and bridge netfilter for pods.\n\
             net.ipv4.ip_forward = 1\n\
             net.bridge.bridge-nf-call-iptables = 1\n\
             net.bridge.bridge-nf-call-ip6tables = 1\n\
             # An IPv6 node: forwarding, router advertisements still accepted.\n\
             net.ipv6.conf.eth0.accept_ra = 2\n\
             net/ipv6/conf/eth0.100/accept_ra = 2\n\
             net.ipv6.conf.all.forwarding = 1\n"
        );
        assert_eq!(
            proc_path("net/ipv6/conf/eth0.100/accept_ra"),
            "/proc/sys/net/ipv6/conf/eth0.100/accept_ra"
        );
        assert_eq!(
            proc_path("net.ipv6.conf.all.forwarding"),
            "/proc/sys/net/ipv6/conf/all/forwarding"
        );
    }
}
