//! The cluster-info ConfigMap (`kube-public/cluster-info`), the one object a worker reads
//! before it trusts the cluster: where it is, its kubeconfig (one unnamed cluster with the
//! server and the embedded CA, in kubeadm's shape), and its `jws-kubeconfig-<token id>`
//! signatures. Discovery reads it, `kubejoin cluster prepare` writes it, `token` and
//! `doctor` look into it: all through here.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::kubeconfig::{ClusterInfo, parse_cluster_info};

pub const NAMESPACE: &str = "kube-public";
pub const NAME: &str = "cluster-info";
/// Its path on the API server.
pub const PATH: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
/// The data key that holds the kubeconfig the signatures sign.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// The data key of a token's signature is this prefix and the token's id.
pub const SIGNATURE_PREFIX: &str = "jws-kubeconfig-";

/// The data key of the signature made with the token `id`.
pub fn signature_key(id: &str) -> String {
    format!("{SIGNATURE_PREFIX}{id}")
}

/// The ids of the tokens whose signatures a ConfigMap's data keys hold.
pub fn signed_ids<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    keys.into_iter()
        .filter_map(|k| k.strip_prefix(SIGNATURE_PREFIX))
        .map(str::to_string)
        .collect()
}

/// The ids of the tokens that signed a ConfigMap read as JSON.
pub fn signed_ids_of(configmap: &Value) -> Vec<String> {
    configmap["data"]
        .as_object()
        .map(|d| signed_ids(d.keys().map(String::as_str)))
        .unwrap_or_default()
}

/// The kubeconfig of cluster-info, as kubeadm writes it.
pub fn kubeconfig(server: &str, ca_pem: &[u8]) -> String {
    use base64::Engine;
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        base64::engine::general_purpose::STANDARD.encode(ca_pem)
    )
}

/// The ConfigMap, unsigned (the bootstrap signer adds the signatures).
pub fn configmap(server: &str, ca_pem: &[u8]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": NAME, "namespace": NAMESPACE },
        "data": { KUBECONFIG_KEY: kubeconfig(server, ca_pem) },
    })
}

#[derive(Deserialize)]
struct ConfigMap {
    kind: Option<String>,
    metadata: Option<Metadata>,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Metadata {
    name: Option<String>,
}

/// An API server's answer body read as cluster-info: its data, or why it is not
/// cluster-info.
pub fn data(body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let cm: ConfigMap = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if cm.kind.as_deref() != Some("ConfigMap") {
        return Err(format!("kind {:?}", cm.kind.unwrap_or_default()));
    }
    let name = cm.metadata.and_then(|m| m.name).unwrap_or_default();
    if name != NAME {
        return Err(format!("ConfigMap named {name:?}"));
    }
    Ok(cm.data)
}

/// The server and CA of a ConfigMap read as JSON, or why workers cannot use it.
pub fn read(configmap: &Value) -> Result<ClusterInfo, String> {
    let Some(text) = configmap["data"][KUBECONFIG_KEY].as_str() else {
        return Err(format!("it has no data.{KUBECONFIG_KEY}"));
    };
    parse_cluster_info(text).map_err(|e| format!("its kubeconfig is not usable by workers: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_ids_are_read_from_the_keys() {
        let cm = json!({"data": {"kubeconfig": "x", "jws-kubeconfig-abcdef": "s", "jws-kubeconfig-012345": "t"}});
        assert_eq!(signed_ids_of(&cm), ["abcdef", "012345"]);
        assert_eq!(signature_key("abcdef"), "jws-kubeconfig-abcdef");
        assert!(signed_ids_of(&json!({})).is_empty());
    }

    #[test]
    fn what_is_written_reads_back() {
        let ca = b"-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";
        let cm = configmap("https://10.0.0.1:6443", ca);
        let body = serde_json::to_vec(&cm).unwrap();
        let data = data(&body).unwrap();
        assert_eq!(
            data[KUBECONFIG_KEY],
            kubeconfig("https://10.0.0.1:6443", ca)
        );
        let info = read(&cm).unwrap();
        assert_eq!(info.server.to_string(), "https://10.0.0.1:6443");
        assert_eq!(info.ca_pem, ca);
        assert_eq!(
            super::data(br#"{"kind":"Secret","metadata":{"name":"cluster-info"}}"#),
            Err("kind \"Secret\"".into())
        );
        assert_eq!(
            super::data(br#"{"kind":"ConfigMap","metadata":{"name":"other"}}"#),
            Err("ConfigMap named \"other\"".into())
        );
        assert!(
            read(&json!({"data": {}}))
                .unwrap_err()
                .contains("no data.kubeconfig")
        );
    }
}
