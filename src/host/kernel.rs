//! Kernel prerequisites of kubelet's networking: the `overlay` and `br_netfilter`
//! modules (`/etc/modules-load.d/kubejoin.conf`, loaded now through
//! systemd-modules-load.service) and forwarding and bridge netfilter sysctls
//! (`/etc/sysctl.d/90-kubejoin.conf`, applied now through `/proc/sys`).

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

pub fn sysctl_file() -> String {
    let mut s = String::from("# Written by kubejoin: forwarding and bridge netfilter for pods.\n");
    for (k, v) in SYSCTLS {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s
}

/// `/proc/sys/...` for a sysctl key.
pub fn proc_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
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
        assert!(sysctl_file().contains("\nnet.ipv4.ip_forward = 1\n"));
        assert_eq!(
            proc_path("net.bridge.bridge-nf-call-iptables"),
            "/proc/sys/net/bridge/bridge-nf-call-iptables"
        );
    }
}
