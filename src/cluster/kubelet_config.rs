//! The cluster's kubelet configuration, as kubeadm publishes it: the ConfigMap
//! `kube-system/kubelet-config` (key `kubelet`, a KubeletConfiguration) and the Role and
//! RoleBinding `kubeadm:kubelet-config` that let bootstrap tokens of kubeadm's group and
//! nodes read it. `kubejoin cluster prepare` checks both and creates what is missing, so
//! that workers of any cluster start from the cluster's configuration.

use serde_json::{Value, json};

use super::prepare::{Item, State, describe};
use super::{Access, Api, ApiError, tokens::DEFAULT_GROUP};
use crate::kubelet::version::Version;

pub const CONFIGMAP: &str = "kubelet-config";
/// kubeadm's Role and RoleBinding for reading it.
pub const ROLE: &str = "kubeadm:kubelet-config";
/// The Service of the cluster's DNS (CoreDNS keeps kube-dns's name).
pub const DNS_SERVICE: &str = "/api/v1/namespaces/kube-system/services/kube-dns";

/// The ConfigMap's name on this cluster: kubeadm 1.23 and older named it after the
/// cluster's version, and a cluster made then still has that name.
async fn existing(api: &Api) -> Result<Option<(String, Value)>, ApiError> {
    let version = api
        .get_opt("/version")
        .await?
        .and_then(|v| Version::parse(v["gitVersion"].as_str()?));
    let mut names = vec![CONFIGMAP.to_string()];
    if let Some(v) = version.filter(|v| !v.at_least(25)) {
        names.push(format!("{CONFIGMAP}-{}.{}", v.major, v.minor));
    }
    for name in names {
        let path = format!("/api/v1/namespaces/kube-system/configmaps/{name}");
        if let Some(cm) = api.get_opt(&path).await? {
            return Ok(Some((name, cm)));
        }
    }
    Ok(None)
}

/// The cluster's DNS Service address, if it has one.
async fn cluster_dns(api: &Api) -> Result<Option<String>, ApiError> {
    Ok(api
        .get_opt(DNS_SERVICE)
        .await?
        .and_then(|s| s["spec"]["clusterIP"].as_str().map(str::to_string))
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()))
}

/// The ConfigMap kubejoin publishes.
pub fn configmap(dns: Option<&str>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": CONFIGMAP, "namespace": "kube-system" },
        "data": { "kubelet": crate::kubelet::config::published(dns) },
    })
}

/// kubeadm's Role and RoleBinding, for `name` (the ConfigMap).
pub fn read_objects(name: &str) -> [Value; 2] {
    [
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": { "name": ROLE, "namespace": "kube-system" },
            "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "resourceNames": [name], "verbs": ["get"] }],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": { "name": ROLE, "namespace": "kube-system" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE },
            "subjects": [
                { "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": DEFAULT_GROUP },
                { "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes" },
            ],
        }),
    ]
}

/// Whether a bootstrap token of kubeadm's group may read `name`.
pub async fn token_may_read(api: &Api, name: &str) -> Result<(bool, String), ApiError> {
    Access {
        verb: "get",
        group: "",
        resource: "configmaps",
        subresource: "",
        namespace: "kube-system",
        name,
    }
    .review_for(
        api,
        "system:bootstrap:kubejoin",
        &[DEFAULT_GROUP, super::BOOTSTRAPPERS, "system:authenticated"],
    )
    .await
}

/// Whether a token of kubeadm's group may read the cluster's kubelet configuration now.
pub async fn read_allowed(api: &Api) -> Result<bool, ApiError> {
    let name = existing(api)
        .await?
        .map(|(n, _)| n)
        .unwrap_or(CONFIGMAP.to_string());
    Ok(token_may_read(api, &name).await?.0)
}

/// The two items: the ConfigMap and the right to read it.
pub async fn items(api: &Api) -> Result<[Item; 2], ApiError> {
    let found = existing(api).await?;
    let name = found
        .as_ref()
        .map(|(n, _)| n.clone())
        .unwrap_or(CONFIGMAP.to_string());
    let config = match &found {
        Some((name, cm)) => {
            let text = cm["data"]["kubelet"].as_str().unwrap_or_default();
            match crate::kubelet::config::parse_cluster(&format!("kube-system/{name}"), text) {
                Ok(c) => {
                    let dns = c.fields.get("clusterDNS").map(Value::to_string);
                    (
                        State::Present,
                        format!(
                            "kube-system/{name}: clusterDNS {}",
                            dns.unwrap_or("not set".into())
                        ),
                        None,
                    )
                }
                Err(why) => (
                    State::Failed,
                    format!("kube-system/{name} cannot be used: {why}; left as it is"),
                    Some(format!(
                        "fix its `kubelet` key, or delete it (kubectl -n kube-system delete configmap {name}) and run `kubejoin cluster prepare` again"
                    )),
                ),
            }
        }
        None => {
            let dns = cluster_dns(api).await?;
            let detail = match &dns {
                Some(ip) => format!("clusterDNS {ip} (Service kube-system/kube-dns)"),
                None => "no clusterDNS: the cluster has no Service kube-system/kube-dns yet".into(),
            };
            (
                State::Missing,
                detail,
                dns.is_none().then(|| {
                    "install the cluster's DNS (CoreDNS, as Service kube-system/kube-dns), then add clusterDNS to kube-system/kubelet-config".to_string()
                }),
            )
        }
    };
    let (allowed, reason) = token_may_read(api, &name).await?;
    let read_state = if allowed {
        State::Present
    } else {
        State::Missing
    };
    Ok([
        Item {
            name: "kubelet-config",
            what: "the cluster's kubelet configuration, which workers start from".into(),
            found: config.0,
            outcome: config.0,
            objects: vec![describe(&configmap(None))],
            detail: config.1,
            fix: config.2,
        },
        Item {
            name: "kubelet-config-read",
            what: format!("bootstrap tokens of group {DEFAULT_GROUP} and nodes may read it"),
            found: read_state,
            outcome: read_state,
            objects: read_objects(&name).iter().map(describe).collect(),
            detail: if allowed {
                reason
            } else {
                format!("{DEFAULT_GROUP} may not get configmaps/{name} in kube-system")
            },
            fix: (!allowed).then(|| {
                format!("bind {DEFAULT_GROUP} and system:nodes to a Role that may get it ({ROLE})")
            }),
        },
    ])
}

/// The objects to create for a missing item.
pub async fn objects(api: &Api, item: &str) -> Result<Vec<Value>, ApiError> {
    Ok(match item {
        "kubelet-config" => vec![configmap(cluster_dns(api).await?.as_deref())],
        _ => {
            let name = existing(api)
                .await?
                .map(|(n, _)| n)
                .unwrap_or(CONFIGMAP.to_string());
            read_objects(&name).to_vec()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_published_reads_back() {
        let cm = configmap(Some("10.96.0.10"));
        assert_eq!(describe(&cm), "ConfigMap kube-system/kubelet-config");
        let c = crate::kubelet::config::parse_cluster(
            "kube-system/kubelet-config",
            cm["data"]["kubelet"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(c.fields["clusterDNS"], json!(["10.96.0.10"]));
        assert_eq!(c.fields["cgroupDriver"], "systemd");
        assert_eq!(c.fields["clusterDomain"], "cluster.local");
        let none = configmap(None);
        assert!(
            !none["data"]["kubelet"]
                .as_str()
                .unwrap()
                .contains("clusterDNS")
        );
        let [role, binding] = read_objects("kubelet-config-1.20");
        assert_eq!(
            role["rules"][0]["resourceNames"],
            json!(["kubelet-config-1.20"])
        );
        assert_eq!(binding["subjects"][1]["name"], "system:nodes");
        assert_eq!(
            super::super::prepare::collection(&role),
            "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/roles"
        );
    }
}
