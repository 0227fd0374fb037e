//! Where a run starts, decided from what is on the node: a node that has joined is left
//! alone, a join interrupted after kubelet started is finished, anything else is joined
//! from the beginning.

use std::path::Path;

use super::report::STATE_FILE;
use crate::kubelet::files::{CLUSTER_CA, KUBELET_KUBECONFIG, KUBELET_UNIT_PATH};
use crate::kubelet::ready;

/// What the decision looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// kubelet has a client certificate it can use ([`certificate`]): its TLS bootstrap
    /// is done.
    pub client_certificate: bool,
    /// kubejoin's record of a finished join exists.
    pub record: bool,
    pub kubelet: Kubelet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kubelet {
    Active,
    /// Starting, or waiting to be restarted (its runtime not up yet).
    Activating,
    Inactive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// kubelet runs with its certificate: nothing to do (even with the token gone).
    AlreadyJoined,
    /// kubelet runs with its certificate but no run recorded the join: wait for the node.
    Interrupted,
    /// Everything from preflight on.
    Fresh,
}

/// The run's start. A dry run never finishes an interrupted join: it says joined.
pub fn decide(seen: Seen, dry_run: bool) -> Start {
    match (seen.client_certificate, seen.kubelet) {
        (true, Kubelet::Active) if !seen.record && !dry_run => Start::Interrupted,
        (true, Kubelet::Active) => Start::AlreadyJoined,
        _ => Start::Fresh,
    }
}

/// Whether to wait for kubelet before deciding: at boot, a joined node's kubelet may still
/// be starting when kubejoin starts, and taking the join path then would need a token the
/// cluster may have deleted.
pub fn wait_for_kubelet(seen: Seen) -> bool {
    seen.client_certificate && seen.record && seen.kubelet == Kubelet::Activating
}

/// Whether kubejoin recorded a finished join.
pub fn recorded() -> bool {
    Path::new(STATE_FILE).exists()
}

/// kubelet's client certificate: `Ok(Some(node))` one it can use (issued by the cluster CA
/// on this node for client authentication, valid now, for this node's name), `Ok(None)`
/// none yet, `Err(why)` one it cannot use: expired (the node was off longer than its
/// life), from another cluster's CA, or for another node (a disk cloned from another
/// node, a host renamed). kubelet itself would go on using a valid one of another node.
pub fn certificate() -> Result<Option<String>, String> {
    let Ok(ca) = std::fs::read(CLUSTER_CA) else {
        // No cluster CA here (not written by a join): only whether one is named.
        let named = std::fs::read_to_string(KUBELET_KUBECONFIG)
            .is_ok_and(|k| k.contains("client-certificate"));
        return Ok(named.then(String::new));
    };
    let Some(cert) = ready::client_certificate(&ca)? else {
        return Ok(None);
    };
    let me = node_name(
        &std::fs::read_to_string(KUBELET_UNIT_PATH).unwrap_or_default(),
        &std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default(),
    );
    if cert.node_name != me {
        return Err(format!(
            "{} is for node {}, and this node is {me}",
            cert.path, cert.node_name
        ));
    }
    Ok(Some(cert.node_name))
}

/// The name kubelet registers this node under: its `--hostname-override` in kubelet.service,
/// else the hostname, lower-cased as kubelet does.
pub fn node_name(unit: &str, hostname: &str) -> String {
    let overridden = unit.split_whitespace().find_map(|w| {
        w.trim_matches('"')
            .strip_prefix("--hostname-override=")
            .map(str::to_string)
    });
    overridden
        .unwrap_or_else(|| hostname.trim().to_string())
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_follows_the_node() {
        use Kubelet::*;
        let seen = |client_certificate, record, kubelet| Seen {
            client_certificate,
            record,
            kubelet,
        };
        // (certificate, record, kubelet, dry run) -> start
        let table = [
            (false, false, Inactive, false, Start::Fresh),
            (false, false, Active, false, Start::Fresh),
            (false, true, Active, false, Start::Fresh),
            (true, false, Inactive, false, Start::Fresh),
            (true, true, Inactive, false, Start::Fresh),
            (true, true, Activating, false, Start::Fresh),
            (true, true, Active, false, Start::AlreadyJoined),
            (true, true, Active, true, Start::AlreadyJoined),
            (true, false, Active, false, Start::Interrupted),
            (true, false, Active, true, Start::AlreadyJoined),
        ];
        for (cert, record, kubelet, dry_run, want) in table {
            assert_eq!(
                decide(seen(cert, record, kubelet), dry_run),
                want,
                "{cert} {record} {kubelet:?} {dry_run}"
            );
        }
        assert!(wait_for_kubelet(seen(true, true, Activating)));
        assert!(!wait_for_kubelet(seen(true, false, Activating)));
        assert!(!wait_for_kubelet(seen(false, true, Activating)));
        assert!(!wait_for_kubelet(seen(true, true, Active)));
    }

    #[test]
    fn the_node_is_named_as_kubelet_names_it() {
        assert_eq!(node_name("", "Worker-7\n"), "worker-7");
        let unit = "ExecStart=/usr/local/bin/kubelet \\\n    --config=/var/lib/kubelet/config.yaml \\\n    --hostname-override=Node-A.example \\\n";
        assert_eq!(node_name(unit, "worker-7"), "node-a.example");
    }
}
