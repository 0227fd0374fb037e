//! Everything kubejoin writes on a node, in one list. The README's "Files written" is this
//! list (`tests/layout.rs` compares them); what one run wrote is in its ledger, which
//! `kubejoin reset` undoes.

use crate::host::{self, containerd, docker, kernel};
use crate::join::STATE_FILE;
use crate::kubelet::files;
use crate::ledger::{BACKUP_SUFFIX, LEDGER};
use crate::lock::LOCK_FILE;

/// One file or directory kubejoin writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: String,
    pub mode: &'static str,
    pub what: String,
    /// Edited in place: its original is kept once beside it ([`BACKUP_SUFFIX`]).
    pub backup: bool,
}

fn entry(path: &str, mode: &'static str, what: impl Into<String>) -> Written {
    Written {
        path: path.into(),
        mode,
        what: what.into(),
        backup: false,
    }
}

fn edited(path: &str, what: &str) -> Written {
    let written = entry(
        path,
        "kept",
        format!(
            "{what}; edited in place (written when absent), the original kept once as \
             `{path}{BACKUP_SUFFIX}`"
        ),
    );
    Written {
        backup: true,
        ..written
    }
}

/// The list, in the order a join writes.
pub fn written() -> Vec<Written> {
    vec![
        entry(
            LOCK_FILE,
            "0644",
            "the run lock (`run`, `plan`, `reset`), with the holder's PID and command",
        ),
        entry(
            LEDGER,
            "0644",
            "the ledger: every change below as it is made, for `kubejoin reset`",
        ),
        edited(host::FSTAB, "swap lines commented out (`[host] swap`)"),
        entry(
            "/etc/systemd/system/<unit>.swap",
            "link",
            "each swap unit masked (a link to /dev/null; `[host] swap`)",
        ),
        entry(
            kernel::MODULES_FILE,
            "0644",
            "overlay and br_netfilter loaded at boot (`[host] kernel`)",
        ),
        entry(
            kernel::SYSCTL_FILE,
            "0644",
            "ip_forward and bridge-nf-call-ip(6)tables at boot (an IPv6 node: IPv6 forwarding, router advertisements kept), set now through /proc/sys too (`[host] kernel`)",
        ),
        entry(
            host::logind::DROP_IN,
            "0644",
            "logind's InhibitDelayMaxSec, kubelet's shutdownGracePeriod (`[kubelet] shutdown_grace_period`)",
        ),
        entry(
            &host::proxy::drop_in_path("<unit>"),
            "0644",
            "`[proxy]` for containerd.service or docker.service (the runtime kubejoin prepares) and kubelet.service: HTTP_PROXY, HTTPS_PROXY and a completed NO_PROXY; removed when `[proxy]` no longer gives the unit one",
        ),
        edited(
            docker::DAEMON_JSON,
            "docker's bridge, iptables and masquerading off, its cgroup driver (runtime docker)",
        ),
        edited(
            &crate::host::registry::hosts_path("<config_path>", "<registry>")
                .display()
                .to_string(),
            "each of `[registries]`: its mirrors and CA, as containerd's hosts.toml, under the CRI plugin's first config_path (/etc/containerd/certs.d unless it names another); removed when the registry leaves `[registries]` (a file kubejoin created; one it edited stays until `kubejoin reset` restores it)",
        ),
        entry(
            crate::host::registry::KUBELET_AUTH,
            "0600",
            "`[registries]` credentials, for kubelet's image pulls (a file that was there before keeps its other entries); removed when no registry has credentials (a file kubejoin created)",
        ),
        edited(
            containerd::CONFIG,
            "runc's SystemdCgroup and the CRI plugin enabled, `[host] sandbox_image`, and the CRI plugin's registry config_path when `[registries]` are set (runtime containerd)",
        ),
        entry(
            files::BOOTSTRAP_KUBECONFIG,
            "0600",
            "kubelet's bootstrap kubeconfig: the server, the cluster CA and the token; removed once the node is in, with the token's file (`keep_token` keeps both)",
        ),
        entry(
            files::CLUSTER_CA,
            "0644",
            "the cluster CA, for kubelet's client-certificate authentication",
        ),
        entry(
            files::KUBELET_CONFIG,
            "0644",
            "kubelet's KubeletConfiguration",
        ),
        entry(
            files::DROP_IN,
            "0644",
            "the per-node fields (`[kubelet.config]`), for kubelet >= 1.30 (`--config-dir`)",
        ),
        entry(files::KUBELET_UNIT_PATH, "0644", "kubelet.service"),
        entry(
            files::STATIC_POD_PATH,
            "0755",
            "directory for kubelet's static pods, made when missing",
        ),
        entry(
            STATE_FILE,
            "0644",
            "the last join's report, for `kubejoin status`",
        ),
    ]
}

/// The README's table.
pub fn markdown() -> String {
    let mut out = String::from("| path | mode | what |\n|---|---|---|\n");
    for w in written() {
        out.push_str(&format!("| `{}` | {} | {} |\n", w.path, w.mode, w.what));
    }
    out
}
