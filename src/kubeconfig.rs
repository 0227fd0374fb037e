//! Reading the kubeconfig published in `cluster-info`, and rendering the bootstrap
//! kubeconfig kubelet starts from (the one the seed builds with `kubectl config`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::endpoint::Endpoint;
use crate::token::BootstrapToken;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeconfigError {
    #[error("it is not a kubeconfig: {0}")]
    Yaml(String),
    #[error("it names no cluster (no unnamed cluster and no current context)")]
    NoCluster,
    #[error("its current context {0:?} does not exist")]
    NoContext(String),
    #[error("its cluster {0:?} is not defined")]
    MissingCluster(String),
    #[error("cluster {0:?} has no server")]
    NoServer(String),
    #[error("cluster {name:?} has an unusable server: {why}")]
    BadServer { name: String, why: String },
    #[error("cluster {0:?} has no embedded certificate-authority-data")]
    NoCaData(String),
    #[error("cluster {0:?} has certificate-authority-data that is not base64")]
    BadCaData(String),
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    clusters: Option<Vec<NamedCluster>>,
    #[serde(default)]
    contexts: Option<Vec<NamedContext>>,
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct NamedCluster {
    #[serde(default)]
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize)]
struct Cluster {
    #[serde(default)]
    server: Option<String>,
    #[serde(default, rename = "certificate-authority-data")]
    ca_data: Option<String>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize)]
struct Context {
    #[serde(default)]
    cluster: String,
}

/// The cluster a cluster-info kubeconfig describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    pub server: Endpoint,
    /// The decoded `certificate-authority-data`: one or more PEM certificates.
    pub ca_pem: Vec<u8>,
}

/// Picks the cluster as kubeadm does: an unnamed cluster first, otherwise the current
/// context's cluster. The CA must be embedded.
pub fn parse_cluster_info(yaml: &str) -> Result<ClusterInfo, KubeconfigError> {
    let config: Config =
        serde_saphyr::from_str(yaml).map_err(|e| KubeconfigError::Yaml(first_line(&e)))?;
    let clusters = config.clusters.unwrap_or_default();
    let chosen = match clusters.iter().find(|c| c.name.is_empty()) {
        Some(c) => c,
        None => {
            let current = config
                .current_context
                .filter(|c| !c.is_empty())
                .ok_or(KubeconfigError::NoCluster)?;
            let context = config
                .contexts
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.name == current)
                .ok_or(KubeconfigError::NoContext(current))?;
            let wanted = context.context.cluster;
            clusters
                .iter()
                .find(|c| c.name == wanted)
                .ok_or(KubeconfigError::MissingCluster(wanted))?
        }
    };
    let name = chosen.name.clone();
    let server = chosen
        .cluster
        .server
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| KubeconfigError::NoServer(name.clone()))?;
    let server = server
        .parse::<Endpoint>()
        .map_err(|e| KubeconfigError::BadServer {
            name: name.clone(),
            why: format!("{server:?}: {e}"),
        })?;
    let ca_data = chosen
        .cluster
        .ca_data
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| KubeconfigError::NoCaData(name.clone()))?;
    let ca_pem = STANDARD
        .decode(ca_data.trim())
        .map_err(|_| KubeconfigError::BadCaData(name.clone()))?;
    Ok(ClusterInfo {
        name,
        server,
        ca_pem,
    })
}

fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// The bootstrap kubeconfig, exactly as `kubectl config set-cluster bootstrap
/// --embed-certs`, `set-credentials kubelet-bootstrap --token`, `set-context bootstrap`
/// and `use-context bootstrap` write it. All inputs are validated types, so no value
/// here needs YAML quoting.
pub fn render_bootstrap(
    server: &Endpoint,
    ca_pem: &[u8],
    token: &BootstrapToken,
) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: bootstrap
contexts:
- context:
    cluster: bootstrap
    user: kubelet-bootstrap
  name: bootstrap
current-context: bootstrap
kind: Config
preferences: {{}}
users:
- name: kubelet-bootstrap
  user:
    token: {token}
",
        ca = STANDARD.encode(ca_pem),
        token = token.expose().as_str(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_unnamed_cluster_first() {
        let yaml = "clusters:\n- name: a\n  cluster: {server: 'https://10.0.0.1:1', certificate-authority-data: QUJD}\n- name: ''\n  cluster: {server: 'https://10.0.0.2:2', certificate-authority-data: QUJD}\ncurrent-context: x\n";
        let c = parse_cluster_info(yaml).unwrap();
        assert_eq!(c.server.to_string(), "https://10.0.0.2:2");
        assert_eq!(c.ca_pem, b"ABC");
    }

    #[test]
    fn otherwise_the_current_contexts_cluster() {
        let yaml = "clusters:\n- name: a\n  cluster: {server: 'https://10.0.0.1:1', certificate-authority-data: QUJD}\n- name: b\n  cluster: {server: 'https://10.0.0.2:2', certificate-authority-data: QUJD}\ncontexts:\n- name: x\n  context: {cluster: b, user: u}\ncurrent-context: x\n";
        assert_eq!(
            parse_cluster_info(yaml).unwrap().server.to_string(),
            "https://10.0.0.2:2"
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_cluster_info("clusters: null\n"),
            Err(KubeconfigError::NoCluster)
        );
        assert_eq!(
            parse_cluster_info("clusters:\n- name: ''\n  cluster: {server: 'https://h:1'}\n"),
            Err(KubeconfigError::NoCaData(String::new()))
        );
        assert!(matches!(
            parse_cluster_info(
                "clusters:\n- name: ''\n  cluster: {server: 'http://h:1', certificate-authority-data: QUJD}\n"
            ),
            Err(KubeconfigError::BadServer { .. })
        ));
        assert!(matches!(
            parse_cluster_info("foo"),
            Err(KubeconfigError::Yaml(_))
        ));
    }

    #[test]
    fn bootstrap_kubeconfig_reads_back() {
        let token: BootstrapToken = "abcdef.0123456789abcdef".parse().unwrap();
        let server: Endpoint = "https://127.0.0.1:6443".parse().unwrap();
        let out = render_bootstrap(&server, b"PEM", &token);
        let c = parse_cluster_info(&out).unwrap();
        assert_eq!(c.name, "bootstrap");
        assert_eq!(c.server, server);
        assert_eq!(c.ca_pem, b"PEM");
        let v: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(v["users"][0]["user"]["token"], "abcdef.0123456789abcdef");
        assert_eq!(v["users"][0]["name"], "kubelet-bootstrap");
        assert_eq!(v["contexts"][0]["context"]["user"], "kubelet-bootstrap");
    }
}
