//! Whether this node's name is free in the cluster, checked before kubelet starts as
//! `kubeadm join` checks it: a Node of that name that exists and is Ready is another
//! machine's (a cloned image, a reused name), and kubelet would take it over. The bootstrap
//! token reads it, with the right `cluster prepare` grants as kubeadm does (ClusterRole
//! `kubeadm:get-nodes`); without that right the check is skipped with a warning.

use serde_json::Value;

use crate::cluster::Api;
use crate::failure::Failure;

/// The check's name, for `--ignore-preflight-errors`.
pub const CHECK: &str = "NodeNameInUse";

/// What the answer to `GET /api/v1/nodes/<name>` as the token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// No Node of this name.
    Free,
    /// A Node of this name that is not Ready: kubelet takes it over (as kubeadm allows).
    NotReady,
    /// A Node of this name that is Ready.
    InUse,
    /// Not known: why (the token may not read Nodes, or no answer).
    Unchecked { why: String, fix: Option<String> },
}

/// The answer, as the check reads it (pure).
pub fn conclude(status: u16, node: &Value) -> Name {
    match status {
        404 => Name::Free,
        200 => {
            let ready = node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if ready { Name::InUse } else { Name::NotReady }
        }
        403 => Name::Unchecked {
            why: "this bootstrap token may not read Nodes (403)".into(),
            fix: Some(
                "on the control plane, `kubejoin cluster prepare` grants bootstrap tokens of group \
                 system:bootstrappers:kubeadm:default-node-token the right to get Nodes \
                 (ClusterRole and ClusterRoleBinding kubeadm:get-nodes, as kubeadm creates them)"
                    .into(),
            ),
        },
        other => Name::Unchecked {
            why: format!("the API server answered {other}"),
            fix: None,
        },
    }
}

/// Checks `name` with `as_token`. A Ready Node of this name stops the join (a person must
/// choose a name) unless the check is ignored or this is a dry run, where it only warns.
pub async fn check(
    as_token: &Api,
    name: &str,
    ignored: bool,
    dry_run: bool,
) -> Result<(), Failure> {
    let path = format!("/api/v1/nodes/{name}");
    let found = match as_token
        .call_status(reqwest::Method::GET, &path, None)
        .await
    {
        Ok((status, body)) => conclude(status, &body),
        Err(e) => Name::Unchecked {
            why: e.to_string(),
            fix: None,
        },
    };
    let phase = super::phase::Phase::Discovery.name();
    match found {
        Name::Free => {}
        Name::NotReady => tracing::info!(
            phase,
            check = CHECK,
            "a Node named {name} exists and is not Ready: kubelet registers as it"
        ),
        Name::Unchecked { why, fix } => tracing::warn!(
            phase,
            check = CHECK,
            "whether a Ready Node named {name} exists was not checked: {why}{}",
            fix.map(|f| format!("; fix: {f}")).unwrap_or_default()
        ),
        Name::InUse => {
            let message = format!(
                "a Node named {name} exists in the cluster and is Ready: another machine runs \
                 under this node's name (a cloned image, or a reused name), and kubelet would \
                 take its Node over"
            );
            tracing::warn!(phase, check = CHECK, "{message}");
            if !(ignored || dry_run) {
                return Err(Failure::NeedsPerson {
                    message,
                    fix: format!(
                        "give this host its own name (hostnamectl set-hostname, cloud-init's \
                         hostname, or [kubelet] node_name in /etc/kubejoin/config.toml); if the \
                         Node is this machine's own from before a reset or a reinstall, delete it \
                         (kubectl delete node {name}) or wait until it is NotReady (about 40 s \
                         after its kubelet stopped), or skip this check with \
                         --ignore-preflight-errors={CHECK}"
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_ready_node_is_in_use() {
        let node = |ready: &str| {
            json!({"status": {"conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": ready},
            ]}})
        };
        assert_eq!(conclude(404, &json!({})), Name::Free);
        assert_eq!(conclude(200, &node("True")), Name::InUse);
        assert_eq!(conclude(200, &node("False")), Name::NotReady);
        assert_eq!(conclude(200, &node("Unknown")), Name::NotReady);
        assert_eq!(conclude(200, &json!({"metadata": {}})), Name::NotReady);
        let Name::Unchecked { fix: Some(fix), .. } = conclude(403, &json!({})) else {
            panic!()
        };
        assert!(fix.contains("kubeadm:get-nodes"), "{fix}");
        assert!(matches!(
            conclude(500, &json!({})),
            Name::Unchecked { fix: None, .. }
        ));
    }
}
