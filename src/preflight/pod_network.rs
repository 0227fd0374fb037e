//! The node's part of the pod network: forwarding and bridge netfilter (which the bridge
//! plugin and kube-proxy need: without them a Service whose endpoint is on the same node
//! fails, and kubeadm no longer checks it), and the CNI plugins where the runtime looks
//! for them.

use super::check::{Check, Severity, check};
use crate::kubelet::cni::{self, DEBIAN_BIN_DIR, Dirs, LOOPBACK};
use crate::kubelet::profile::{Cri, Profile};

/// What these checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `net.ipv4.ip_forward`.
    pub ip_forward: Option<bool>,
    /// `net.bridge.bridge-nf-call-iptables` (`None`: br_netfilter not loaded).
    pub bridge_nf: Option<bool>,
    /// Host preparation loads br_netfilter and sets forwarding (`[host] kernel`).
    pub kernel_managed: bool,
    /// Where the runtime looks for CNI plugins and what is there (`None`: a runtime whose
    /// directories kubejoin does not know, or kubelet's profile unknown).
    pub cni: Option<cni::Found>,
}

/// Reads the host: the two sysctls, and the CNI directories of `profile`'s runtime.
pub fn inspect(profile: Option<&Profile>, kernel_managed: bool) -> Facts {
    let one = |path: &str| std::fs::read_to_string(path).ok().map(|v| v.trim() == "1");
    Facts {
        ip_forward: one("/proc/sys/net/ipv4/ip_forward"),
        bridge_nf: one("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        kernel_managed,
        cni: profile.and_then(dirs).map(cni::inspect),
    }
}

/// Where this node's runtime looks for CNI plugins; `None` for a runtime kubejoin does
/// not configure (its directories are its own).
fn dirs(profile: &Profile) -> Option<Dirs> {
    match &profile.cri {
        Cri::Dockershim => Some(cni::docker(false)),
        Cri::Remote(_) if profile.cri_dockerd => Some(cni::docker(true)),
        Cri::Remote(ep) if ep == crate::host::containerd::SOCKET => {
            let path = crate::host::containerd::CONFIG;
            Some(cni::containerd(
                path,
                std::fs::read_to_string(path).ok().as_deref(),
            ))
        }
        Cri::Remote(_) => None,
    }
}

pub fn checks(f: &Facts, checks: &mut Vec<Check>) {
    use Severity::*;
    let prepared = |what: &str| {
        if f.kernel_managed {
            format!(" (host preparation {what} it)")
        } else {
            String::new()
        }
    };
    checks.push(check(
        "IPForward",
        f.ip_forward == Some(true),
        Warning,
        match f.ip_forward {
            Some(true) => "net.ipv4.ip_forward is 1".into(),
            Some(false) => format!("net.ipv4.ip_forward is 0{}", prepared("sets")),
            None => "net.ipv4.ip_forward cannot be read".into(),
        },
        Some(
            "pods need forwarding: `sysctl -w net.ipv4.ip_forward=1` and set it in /etc/sysctl.d/ \
             ([host] kernel = true does both)"
                .into(),
        ),
    ));
    let broken = "Services fail from pods on the bridge of the node their endpoint runs on";
    checks.push(check(
        "BridgeNetfilter",
        f.bridge_nf == Some(true),
        Warning,
        match f.bridge_nf {
            Some(true) => "net.bridge.bridge-nf-call-iptables is 1".into(),
            Some(false) => format!(
                "net.bridge.bridge-nf-call-iptables is 0{}: {broken}",
                prepared("sets")
            ),
            None => format!(
                "br_netfilter is not loaded (no net.bridge.bridge-nf-call-iptables){}: {broken}",
                prepared("loads")
            ),
        },
        Some(
            "`modprobe br_netfilter`, `sysctl -w net.bridge.bridge-nf-call-iptables=1`, and both \
             in /etc/modules-load.d/ and /etc/sysctl.d/ ([host] kernel = true does this)"
                .into(),
        ),
    ));
    if let Some(found) = &f.cni {
        checks.push(plugins_check(found));
    }
}

fn plugins_check(found: &cni::Found) -> Check {
    let d = &found.dirs;
    let bins = cni::bin_list(d);
    let conf = if found.conf_exists {
        String::new()
    } else {
        format!(
            "; {} does not exist yet (a network plugin writes its configuration there)",
            d.conf.display()
        )
    };
    let message = if found.loopback {
        format!(
            "{} finds the CNI plugins in {bins} ({}){conf}",
            d.runtime, d.source
        )
    } else {
        format!(
            "{} looks for CNI plugins in {bins} ({}), and {LOOPBACK} is not there: every pod \
             would stay ContainerCreating (failed to find plugin \"{LOOPBACK}\"){conf}",
            d.runtime, d.source
        )
    };
    let fix = match (d.runtime, found.debian_plugins) {
        ("containerd", true) => format!(
            "the plugins are in {DEBIAN_BIN_DIR} (Debian's containernetworking-plugins): set \
             bin_dir = \"{DEBIAN_BIN_DIR}\" under [plugins.\"io.containerd.grpc.v1.cri\".cni] in \
             {} (containerd 2.x: bin_dirs under [plugins.'io.containerd.cri.v1.runtime'.cni]) and \
             restart containerd",
            crate::host::containerd::CONFIG
        ),
        (_, true) => format!(
            "the plugins are in {DEBIAN_BIN_DIR} (Debian's containernetworking-plugins), where \
             {} does not look: `mkdir -p {bins} && ln -s {DEBIAN_BIN_DIR}/* {bins}/`",
            d.runtime
        ),
        _ => format!(
            "install the CNI plugins (bridge, host-local, {LOOPBACK}, portmap) in {bins}; \
             Debian's containernetworking-plugins puts them in {DEBIAN_BIN_DIR}, where the \
             runtime must then be told to look; some network plugins install them themselves"
        ),
    };
    check(
        "CNIPlugins",
        found.loopback,
        Severity::Warning,
        message,
        Some(fix),
    )
}

#[cfg(test)]
/// A host where every check passes.
pub fn healthy() -> Facts {
    use cni::Found;
    Facts {
        ip_forward: Some(true),
        bridge_nf: Some(true),
        kernel_managed: false,
        cni: Some(Found {
            dirs: cni::containerd("/etc/containerd/config.toml", None),
            loopback: true,
            debian_plugins: false,
            conf_exists: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::cni::Found;

    fn found(loopback: bool, debian: bool, conf: bool, runtime: Dirs) -> Check {
        plugins_check(&Found {
            dirs: runtime,
            loopback,
            debian_plugins: debian,
            conf_exists: conf,
        })
    }

    #[test]
    fn the_plugins_where_the_runtime_looks() {
        let debian_config = cni::containerd(
            "/etc/containerd/config.toml",
            Some(
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\nbin_dir = \"/usr/lib/cni\"\n",
            ),
        );
        let ok = found(true, true, true, debian_config);
        assert!(ok.ok && ok.fix.is_none());
        assert_eq!(
            ok.message,
            "containerd finds the CNI plugins in /usr/lib/cni (bin_dir in /etc/containerd/config.toml)"
        );
        // The classic: Debian's plugins, containerd's default directory.
        let default = cni::containerd("/etc/containerd/config.toml", None);
        let moved = found(false, true, false, default.clone());
        assert!(!moved.ok);
        assert_eq!(moved.severity, Severity::Warning);
        assert!(
            moved.message.starts_with(
                "containerd looks for CNI plugins in /opt/cni/bin (containerd's default: no /etc/containerd/config.toml), and loopback is not there"
            ),
            "{}",
            moved.message
        );
        assert!(
            moved.message.ends_with(
                "; /etc/cni/net.d does not exist yet (a network plugin writes its configuration there)"
            ),
            "{}",
            moved.message
        );
        assert!(
            moved.fix.as_ref().unwrap().contains(
                "set bin_dir = \"/usr/lib/cni\" under [plugins.\"io.containerd.grpc.v1.cri\".cni]"
            ),
            "{:?}",
            moved.fix
        );
        let none = found(false, false, true, default);
        assert!(none.fix.unwrap().starts_with(
            "install the CNI plugins (bridge, host-local, loopback, portmap) in /opt/cni/bin;"
        ));
        let docker = found(false, true, true, cni::docker(true));
        assert!(
            docker
                .message
                .starts_with("cri-dockerd looks for CNI plugins in /opt/cni/bin (its default)")
        );
        assert!(
            docker
                .fix
                .unwrap()
                .contains("`mkdir -p /opt/cni/bin && ln -s /usr/lib/cni/* /opt/cni/bin/`")
        );
    }

    #[test]
    fn forwarding_and_bridge_netfilter() {
        let mut f = healthy();
        f.bridge_nf = None;
        f.kernel_managed = true;
        f.ip_forward = Some(false);
        let run = |f: &Facts| {
            let mut out = Vec::new();
            checks(f, &mut out);
            move |n: &str| out.iter().find(|c| c.name == n).unwrap().clone()
        };
        let by = run(&f);
        assert_eq!(
            by("BridgeNetfilter").message,
            "br_netfilter is not loaded (no net.bridge.bridge-nf-call-iptables) (host preparation loads it): Services fail from pods on the bridge of the node their endpoint runs on"
        );
        assert_eq!(
            by("IPForward").message,
            "net.ipv4.ip_forward is 0 (host preparation sets it)"
        );
        f.kernel_managed = false;
        f.bridge_nf = Some(false);
        let by = run(&f);
        assert!(!by("BridgeNetfilter").ok);
        assert!(
            by("BridgeNetfilter")
                .fix
                .unwrap()
                .contains("modprobe br_netfilter")
        );
        assert!(by("CNIPlugins").ok);
    }
}
