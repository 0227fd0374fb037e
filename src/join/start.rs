//! Where a run starts, decided from what is on the node: a node that has joined is left
//! alone, a join interrupted after kubelet started is finished, anything else is joined
//! from the beginning.

use std::path::Path;

use super::report::STATE_FILE;
use crate::kubelet::files::{CLUSTER_CA, KUBELET_KUBECONFIG};
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

/// A client certificate kubelet cannot use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    pub why: String,
    /// The node the certificate is for, when it is another node's (a disk cloned from
    /// it, or this host renamed).
    pub other_node: Option<String>,
    /// It names this node (an expired one, say): the Node of this name is this node's.
    pub this_node: bool,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// kubelet's client certificate: `Ok(Some(node))` one it can use (issued by the cluster CA
/// on this node for client authentication, valid now, for `me`, this node's name),
/// `Ok(None)` none yet, `Err` one it cannot use: expired (the node was off longer than its
/// life), from another cluster's CA, or for another node (a disk cloned from another
/// node, a host renamed). kubelet itself would go on using a valid one of another node.
pub fn certificate(me: &str) -> Result<Option<String>, Unusable> {
    let unusable = |why: String| Unusable {
        why,
        other_node: None,
        this_node: ready::named_node().as_deref() == Some(me),
    };
    let Ok(ca) = std::fs::read(CLUSTER_CA) else {
        // No cluster CA here (not written by a join): only whether one is named.
        let named = std::fs::read_to_string(KUBELET_KUBECONFIG)
            .is_ok_and(|k| k.contains("client-certificate"));
        return Ok(named.then(String::new));
    };
    let Some(cert) = ready::client_certificate(&ca).map_err(unusable)? else {
        return Ok(None);
    };
    if cert.node_name != me {
        return Err(Unusable {
            why: format!(
                "{} is for node {}, and this node is {me}",
                cert.path, cert.node_name
            ),
            other_node: Some(cert.node_name),
            this_node: false,
        });
    }
    Ok(Some(cert.node_name))
}

/// Whether kubelet's certificate ([`certificate`]), usable or not, names this node: then a
/// Node of this name is this node's own.
pub fn names_this_node(certificate: &Result<Option<String>, Unusable>) -> bool {
    match certificate {
        Ok(Some(_)) => true,
        Ok(None) => false,
        Err(u) => u.this_node,
    }
}

/// This host's name, as the kernel has it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default()
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
}
