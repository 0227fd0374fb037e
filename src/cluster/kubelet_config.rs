//! The cluster's kubelet configuration, as kubeadm publishes it: the ConfigMap
//! `kube-system/kubelet-config` (key `kubelet`, a KubeletConfiguration) and the Role and
//! RoleBinding `kubeadm:kubelet-config` that let bootstrap tokens of kubeadm's group and
//! nodes read it. `kubejoin cluster prepare` checks both and creates what is missing, so
//! that workers of any cluster start from the cluster's configuration.

use serde_json::{Value, json};

use super::{Access, Api, ApiError, tokens::DEFAULT_GROUP};
use crate::kubelet::version::Version;

pub const CONFIGMAP: &str = "kubelet-config";
/// kubeadm's Role and RoleBinding for reading it.
pub const ROLE: &str = "kubeadm:kubelet-config";
/// The Service of the cluster's DNS (CoreDNS keeps kube-dns's name).
pub const DNS_SERVICE: &str = "/api/v1/namespaces/kube-system/services/kube-dns";

/// The ConfigMap's name on this cluster: kubeadm 1.23 and older named it after the
/// cluster's version, and a cluster made then still has that name.
pub async fn existing(api: &Api) -> Result<Option<(String, Value)>, ApiError> {
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
pub async fn cluster_dns(api: &Api) -> Result<Option<String>, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_published_reads_back() {
        let cm = configmap(Some("10.96.0.10"));
        assert_eq!(cm["metadata"]["name"], "kubelet-config");
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
    }
}
