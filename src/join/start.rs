//! Where a run starts, decided from what is on the node: a node that has joined is left
//! alone, a join interrupted after kubelet started is finished, anything else is joined
//! from the beginning.

use std::path::Path;

use super::report::STATE_FILE;
use crate::kubelet::files::KUBELET_KUBECONFIG;

/// What the decision looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// kubelet's kubeconfig names a client certificate: its TLS bootstrap is done.
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

/// kubelet's kubeconfig names a client certificate, and whether kubejoin recorded a join.
pub fn on_disk() -> (bool, bool) {
    let certificate =
        std::fs::read_to_string(KUBELET_KUBECONFIG).is_ok_and(|k| k.contains("client-certificate"));
    (certificate, Path::new(STATE_FILE).exists())
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
