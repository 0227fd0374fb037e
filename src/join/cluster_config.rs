//! The cluster's kubelet configuration, read as `kubeadm join` reads it: with the
//! bootstrap token, over TLS that trusts only the discovered CA, the `kubelet` key of
//! `kube-system/kubelet-config` (clusters of kubeadm 1.24 and later), else of
//! `kubelet-config-<major>.<minor>` (kubeadm 1.23 and older, named after the cluster's
//! version). A cluster without one, or a token that may not read it, is fine: kubelet then
//! gets kubejoin's defaults, and the log says so once, with the fix.

use std::time::Duration;

use crate::cluster::{Api, ApiError};
use crate::failure::Failure;
use crate::kubelet::config::{ClusterConfig, parse_cluster};
use crate::kubelet::version::Version;
use crate::token::BootstrapToken;

pub const CONFIGMAP: &str = "kubelet-config";

/// What reading the cluster's kubelet configuration found.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Found(ClusterConfig),
    /// None to use: why, and what would give this node the cluster's.
    NotRead {
        why: String,
        fix: String,
    },
}

/// The ConfigMaps to try, newest kubeadm's name first.
pub fn names(api_version: Option<&Version>) -> Vec<String> {
    let mut names = vec![CONFIGMAP.to_string()];
    if let Some(v) = api_version.filter(|v| !v.at_least(25)) {
        names.push(format!("{CONFIGMAP}-{}.{}", v.major, v.minor));
    }
    names
}

/// How the answers for every name add up (`answers`: each name's status, and its
/// ConfigMap when 200).
pub fn conclude(answers: &[(String, u16, Option<serde_json::Value>)]) -> Result<Read, Failure> {
    for (name, status, body) in answers {
        if *status != 200 {
            continue;
        }
        let configmap = format!("kube-system/{name}");
        let text = body
            .as_ref()
            .and_then(|b| b["data"]["kubelet"].as_str())
            .unwrap_or_default();
        return parse_cluster(&configmap, text)
            .map(Read::Found)
            .map_err(|why| Failure::NeedsPerson {
                message: format!("the cluster's kubelet configuration {configmap} cannot be used: {why}"),
                fix: format!(
                    "fix its `kubelet` key (a KubeletConfiguration, as kubeadm writes it) or delete {configmap} \
                     (kubectl -n kube-system delete configmap {name}), then run kubejoin again"
                ),
            });
    }
    let tried: Vec<String> = answers
        .iter()
        .map(|(n, s, _)| format!("kube-system/{n} ({s})"))
        .collect();
    let tried = tried.join(", ");
    let statuses: Vec<u16> = answers.iter().map(|(_, s, _)| *s).collect();
    Ok(if statuses.contains(&401) {
        Read::NotRead {
            why: format!("the API server does not accept the bootstrap token: {tried}"),
            fix: "start kube-apiserver with --enable-bootstrap-token-auth=true (kubelet's TLS bootstrap needs it too)"
                .into(),
        }
    } else if statuses.contains(&403) {
        Read::NotRead {
            why: format!(
                "this bootstrap token may not read the cluster's kubelet configuration (there may be none): {tried}"
            ),
            fix: "on the control plane, `kubejoin cluster prepare` publishes kube-system/kubelet-config where there is \
                  none and lets tokens of group system:bootstrappers:kubeadm:default-node-token read it (tokens from \
                  `kubejoin token create` and `kubeadm token create` are in that group)"
                .into(),
        }
    } else {
        Read::NotRead {
            why: format!(
                "the cluster publishes no kubelet configuration (clusters made by kubeadm do): {tried}"
            ),
            fix: "on the control plane, `kubejoin cluster prepare` publishes kube-system/kubelet-config \
                  (clusterDNS from the cluster's DNS Service); or set [kubelet] cluster_dns on each node"
                .into(),
        }
    })
}

/// Reads it from the API server at `server`, trusting only `ca_pem`. An answer other than
/// 200, 401, 403 or 404, or none, after three tries is a transient failure.
pub async fn read(
    server: &str,
    ca_pem: &[u8],
    token: &BootstrapToken,
    api_version: Option<&Version>,
) -> Result<Read, Failure> {
    let api = Api::new(server, ca_pem, Some(token.expose()))
        .map_err(|e| anyhow::anyhow!("cannot read the cluster's kubelet configuration: {e}"))?;
    let mut answers = Vec::new();
    for name in names(api_version) {
        let path = format!("/api/v1/namespaces/kube-system/configmaps/{name}");
        let mut tries = 0;
        let (status, body) = loop {
            tries += 1;
            let answer = api.call_status(reqwest::Method::GET, &path, None).await;
            match answer {
                Ok((status, body)) if matches!(status, 200 | 401 | 403 | 404) => {
                    break (status, body);
                }
                _ if tries < 3 => tokio::time::sleep(Duration::from_secs(2)).await,
                Ok((status, body)) => {
                    return Err(ApiError::Status {
                        method: "GET".into(),
                        path,
                        status,
                        message: body["message"].as_str().unwrap_or("").to_string(),
                    }
                    .into());
                }
                Err(e) => return Err(e.into()),
            }
        };
        let found = status == 200;
        answers.push((name, status, (status == 200).then_some(body)));
        if found {
            break;
        }
    }
    conclude(&answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_kubeadms() {
        assert_eq!(names(None), ["kubelet-config"]);
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(
            names(Some(&v("v1.20.2"))),
            ["kubelet-config", "kubelet-config-1.20"]
        );
        assert_eq!(names(Some(&v("v1.36.2"))), ["kubelet-config"]);
    }

    #[test]
    fn answers_add_up() {
        let cm = json!({"data": {"kubelet": "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\n"}});
        let found = conclude(&[
            ("kubelet-config".into(), 403, None),
            ("kubelet-config-1.20".into(), 200, Some(cm)),
        ])
        .unwrap();
        let Read::Found(c) = found else {
            panic!("{found:?}")
        };
        assert_eq!(c.configmap, "kube-system/kubelet-config-1.20");
        assert_eq!(c.fields["clusterDNS"], json!(["10.96.0.10"]));

        let Read::NotRead { why, fix } = conclude(&[("kubelet-config".into(), 403, None)]).unwrap()
        else {
            panic!()
        };
        assert!(why.contains("may not read"), "{why}");
        assert!(fix.contains("kubejoin cluster prepare"), "{fix}");
        let Read::NotRead { why, .. } = conclude(&[("kubelet-config".into(), 404, None)]).unwrap()
        else {
            panic!()
        };
        assert!(why.contains("publishes no kubelet configuration"), "{why}");

        let bad = json!({"data": {"kubelet": "kind: Pod\n"}});
        let e = conclude(&[("kubelet-config".into(), 200, Some(bad))]).unwrap_err();
        assert_eq!(e.exit_code(), crate::failure::exit::NEEDS_PERSON);
    }
}
