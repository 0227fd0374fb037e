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
    /// None to use: why, and what would give this node the cluster's. `absent`: the
    /// cluster answered that it has none (404 for every name); otherwise it may have one
    /// this credential may not read.
    NotRead {
        why: String,
        fix: String,
        absent: bool,
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

/// Who asks: the bootstrap token (at the join) or the node (its own certificate, after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Token,
    Node,
}

/// How the answers for every name add up (`answers`: each name's status, and its
/// ConfigMap when 200), for `who` asked.
pub fn conclude(
    answers: &[(String, u16, Option<serde_json::Value>)],
    who: Reader,
) -> Result<Read, Failure> {
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
    let absent = statuses.iter().all(|s| *s == 404);
    Ok(if statuses.contains(&401) {
        Read::NotRead {
            absent,
            why: match who {
                Reader::Token => format!("the API server does not accept the bootstrap token: {tried}"),
                Reader::Node => format!("the API server does not accept this node's client certificate: {tried}"),
            },
            fix: match who {
                Reader::Token => "start kube-apiserver with --enable-bootstrap-token-auth=true (kubelet's TLS bootstrap needs it too)",
                Reader::Node => "check that kube-apiserver's --client-ca-file is the cluster CA that signed kubelet's certificate",
            }
            .into(),
        }
    } else if statuses.contains(&403) {
        Read::NotRead {
            absent,
            why: format!(
                "{} may not read the cluster's kubelet configuration (there may be none): {tried}",
                match who {
                    Reader::Token => "this bootstrap token",
                    Reader::Node => "this node",
                }
            ),
            fix: "on the control plane, `kubejoin cluster prepare` publishes kube-system/kubelet-config where there is \
                  none and lets tokens of group system:bootstrappers:kubeadm:default-node-token and the nodes \
                  (group system:nodes) read it, as kubeadm's Role does (tokens from `kubejoin token create` and \
                  `kubeadm token create` are in that group)"
                .into(),
        }
    } else {
        Read::NotRead {
            absent,
            why: format!(
                "the cluster publishes no kubelet configuration (clusters made by kubeadm do): {tried}"
            ),
            fix: "on the control plane, `kubejoin cluster prepare` publishes kube-system/kubelet-config \
                  (clusterDNS from the cluster's DNS Service); or set [kubelet] cluster_dns on each node"
                .into(),
        }
    })
}

/// The API server as the bootstrap token, trusting only `ca_pem`.
pub fn as_token(server: &str, ca_pem: &[u8], token: &BootstrapToken) -> Result<Api, Failure> {
    Api::new(server, ca_pem, Some(token.expose())).map_err(|e| {
        anyhow::anyhow!("cannot ask the API server as the bootstrap token: {e}").into()
    })
}

/// The API server's version (`GET /version`, which anyone may read); `None` when it does
/// not answer or names no version kubejoin can read.
pub async fn api_version(api: &Api) -> Option<Version> {
    let v = api.get_opt("/version").await.ok().flatten()?;
    Version::parse(v["gitVersion"].as_str()?)
}

/// Reads it with `api` (as the bootstrap token, or as the node with kubelet's own
/// certificate: kubeadm's Role lets both read it). An answer other than 200, 401, 403 or
/// 404, or none, after three tries is a transient failure.
pub async fn read(api: &Api, api_version: Option<&Version>, who: Reader) -> Result<Read, Failure> {
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
    conclude(&answers, who)
}

/// The cluster's configuration a run recorded (`state`, the last report): `Some(None)` the
/// cluster had none, `None` no run recorded kubelet's configuration. Only the cluster's
/// fields that were not overridden on this node are in the record, and only those matter
/// while the overrides stay.
pub fn recorded(state: &serde_json::Value) -> Option<Option<ClusterConfig>> {
    let config = state.get("kubelet_config")?;
    let Some(configmap) = config["cluster"].as_str() else {
        return Some(None);
    };
    let fields = config["fields"]
        .as_array()?
        .iter()
        .filter(|f| f["source"]["from"] == "cluster" && f["source"]["configmap"] == configmap)
        .filter_map(|f| Some((f["name"].as_str()?.to_string(), f["value"].clone())))
        .collect();
    Some(Some(ClusterConfig {
        configmap: configmap.to_string(),
        fields,
    }))
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
        let found = conclude(
            &[
                ("kubelet-config".into(), 403, None),
                ("kubelet-config-1.20".into(), 200, Some(cm)),
            ],
            Reader::Token,
        )
        .unwrap();
        let Read::Found(c) = found else {
            panic!("{found:?}")
        };
        assert_eq!(c.configmap, "kube-system/kubelet-config-1.20");
        assert_eq!(c.fields["clusterDNS"], json!(["10.96.0.10"]));

        let Read::NotRead { why, fix, absent } =
            conclude(&[("kubelet-config".into(), 403, None)], Reader::Token).unwrap()
        else {
            panic!()
        };
        assert!(
            why.starts_with("this bootstrap token may not read"),
            "{why}"
        );
        let Read::NotRead { why: as_node, .. } =
            conclude(&[("kubelet-config".into(), 403, None)], Reader::Node).unwrap()
        else {
            panic!()
        };
        assert!(as_node.starts_with("this node may not read"), "{as_node}");
        assert!(fix.contains("kubejoin cluster prepare"), "{fix}");
        assert!(!absent);
        let Read::NotRead { why, absent, .. } = conclude(
            &[
                ("kubelet-config".into(), 404, None),
                ("kubelet-config-1.20".into(), 404, None),
            ],
            Reader::Token,
        )
        .unwrap() else {
            panic!()
        };
        assert!(why.contains("publishes no kubelet configuration"), "{why}");
        assert!(absent, "only 404s: the cluster has none");

        let bad = json!({"data": {"kubelet": "kind: Pod\n"}});
        let e = conclude(
            &[("kubelet-config".into(), 200, Some(bad.clone()))],
            Reader::Node,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), crate::failure::exit::NEEDS_PERSON);
    }

    #[test]
    fn the_recorded_configuration_is_the_clusters_fields() {
        use crate::kubelet::config::{Field, Source};
        let field = |name: &str, value, source| Field {
            name: name.into(),
            value,
            source,
        };
        let cluster = Source::Cluster {
            configmap: "kube-system/kubelet-config".into(),
        };
        let effective = json!({
            "cluster": "kube-system/kubelet-config",
            "fields": [
                field("clusterDNS", json!(["10.96.0.10"]), cluster.clone()),
                field("cgroupDriver", json!("systemd"), Source::Node { why: "its runtime's" }),
                field("maxPods", json!(42), Source::User { key: "kubelet.config.maxPods".into(), origin: String::new() }),
                field("clusterDomain", json!("cluster.local"), cluster),
            ],
        });
        let c = recorded(&json!({ "kubelet_config": effective }))
            .unwrap()
            .unwrap();
        assert_eq!(c.configmap, "kube-system/kubelet-config");
        assert_eq!(
            serde_json::Value::Object(c.fields),
            json!({"clusterDNS": ["10.96.0.10"], "clusterDomain": "cluster.local"})
        );
        let none = json!({ "kubelet_config": { "cluster": null, "fields": [] } });
        assert_eq!(recorded(&none), Some(None));
        assert_eq!(recorded(&json!({ "outcome": "started" })), None);
    }
}
