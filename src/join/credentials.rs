//! Once the node is in, the bootstrap credentials go: kubelet has its own client
//! certificate, and a token left on disk would let anyone who reads this disk get a
//! certificate for another node name (the bootstrappers' CSRs are approved by themselves)
//! until it expires. As `kubeadm join`, which deletes its bootstrap kubeconfig once
//! kubelet has its certificate. `[cluster] keep_token = true` keeps them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ClusterSettings;
use crate::fsutil;
use crate::kubelet::files::BOOTSTRAP_KUBECONFIG;

/// What became of the bootstrap credentials, in the report and the state record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Removed once the node was in (or already gone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Left on this node, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
    /// What became of the token on the cluster ([`super::burn`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_cluster: Option<String>,
}

impl Credentials {
    /// What a recorded run ([`super::load_state`]) says of them, if anything.
    pub fn of_record(state: &serde_json::Value) -> Option<Credentials> {
        serde_json::from_value(state["credentials"].clone()).ok()
    }

    /// One line of the report.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.removed.is_empty() {
            parts.push(format!(
                "removed {} (kubelet has its own)",
                self.removed.join(", ")
            ));
        }
        if !self.kept.is_empty() {
            parts.push(format!("kept {}", self.kept.join("; ")));
        }
        if parts.is_empty() {
            parts.push("none on this node (kubelet has its own)".into());
        }
        parts.extend(self.on_cluster.clone());
        parts.join("; ")
    }
}

/// The files to remove, and what stays (pure).
pub fn plan(c: &ClusterSettings) -> (Vec<PathBuf>, Vec<String>) {
    if c.keep_token {
        let mut kept = vec![format!("{BOOTSTRAP_KUBECONFIG} (keep_token = true)")];
        kept.extend(
            c.token_file
                .as_ref()
                .map(|p| format!("{} (keep_token = true)", p.display())),
        );
        return (Vec::new(), kept);
    }
    let mut remove = vec![PathBuf::from(BOOTSTRAP_KUBECONFIG)];
    remove.extend(c.token_file.clone());
    let kept = c
        .token_elsewhere
        .iter()
        .map(|w| format!("{w}: kubejoin does not remove it"))
        .collect();
    (remove, kept)
}

/// Removes them (each durably: a power cut does not bring one back) and says so, with
/// what became of the token on the cluster.
pub fn remove(
    c: &ClusterSettings,
    on_cluster: Option<String>,
) -> Result<Credentials, fsutil::FileError> {
    let (paths, kept) = plan(c);
    let mut removed = Vec::new();
    for path in paths {
        if fsutil::remove_durably(&path)? {
            removed.push(path.display().to_string());
        }
    }
    let credentials = Credentials {
        removed,
        kept,
        on_cluster,
    };
    tracing::info!(
        phase = "done",
        "bootstrap credentials: {}",
        credentials.describe()
    );
    // What keep_token keeps was asked for; what stays anywhere else is warned of.
    if !c.keep_token {
        for k in &credentials.kept {
            tracing::warn!(
                phase = "done",
                "the bootstrap token stays on this node in {k}; anyone who can read it can \
                 join a node until the token expires"
            );
        }
    }
    Ok(credentials)
}

/// A join that failed for good (it needs a person, or trust failed): its bootstrap
/// kubeconfig goes, as `kubeadm join` removes its own whatever the outcome. A transient
/// failure keeps it: systemd runs the join again, which writes it again anyway.
pub fn remove_after_failure() {
    match fsutil::remove_durably(std::path::Path::new(BOOTSTRAP_KUBECONFIG)) {
        Ok(true) => tracing::info!(
            phase = "done",
            "removed {BOOTSTRAP_KUBECONFIG}: the join failed for good; the next one writes it again"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!(phase = "done", "{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(keep: bool, file: Option<&str>, elsewhere: Option<&str>) -> ClusterSettings {
        ClusterSettings {
            servers: vec!["https://10.0.0.1:6443".parse().unwrap()],
            bootstrap_token: Ok("abcdef.0123456789abcdef".parse().unwrap()),
            token_file: file.map(PathBuf::from),
            keep_token: keep,
            token_elsewhere: elsewhere.map(str::to_string),
            ca_cert_hashes: Vec::new(),
            unsafe_skip_ca_verification: true,
            discovery_timeout: std::time::Duration::from_secs(1),
            use_configured_server: false,
            pinned_refetch: false,
        }
    }

    #[test]
    fn what_goes_and_what_stays() {
        let (remove, kept) = plan(&cluster(false, Some("/etc/kubejoin/token"), None));
        assert_eq!(
            remove,
            [
                PathBuf::from("/var/lib/kubelet/bootstrap-kubeconfig"),
                PathBuf::from("/etc/kubejoin/token")
            ]
        );
        assert!(kept.is_empty());
        let (remove, kept) = plan(&cluster(
            false,
            None,
            Some("cluster.token in /etc/kubejoin/config.toml"),
        ));
        assert_eq!(
            remove,
            [PathBuf::from("/var/lib/kubelet/bootstrap-kubeconfig")]
        );
        assert_eq!(
            kept,
            ["cluster.token in /etc/kubejoin/config.toml: kubejoin does not remove it"]
        );
        let (remove, kept) = plan(&cluster(true, Some("/etc/kubejoin/token"), None));
        assert!(remove.is_empty());
        assert_eq!(kept.len(), 2);
        let c = Credentials {
            removed: vec!["/a".into(), "/b".into()],
            kept: vec!["x: why".into()],
            on_cluster: None,
        };
        assert_eq!(
            c.describe(),
            "removed /a, /b (kubelet has its own); kept x: why"
        );
        let c = Credentials {
            on_cluster: Some("bootstrap token abcdef deleted".into()),
            ..Credentials::default()
        };
        assert_eq!(
            c.describe(),
            "none on this node (kubelet has its own); bootstrap token abcdef deleted"
        );
    }
}
