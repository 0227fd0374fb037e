//! Is the node in? What kubelet itself says, in order: its health endpoint answers `ok`;
//! its kubeconfig points at a client certificate issued by the cluster CA (TLS bootstrap
//! done); the Node object exists, read with that certificate (the Node authorizer lets
//! a node read itself). Each probe is one bounded request or file read.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::discovery::http;
use crate::kubelet::files::{HEALTHZ_ADDRESS, HEALTHZ_PORT, KUBELET_KUBECONFIG};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A client for kubelet's health endpoint: plain HTTP on loopback (its TLS settings are
/// never used).
pub fn healthz_client() -> http::Client {
    http::untrusted_client()
}

/// `GET http://127.0.0.1:10248/healthz` answers `ok`.
pub async fn healthz(client: &http::Client) -> bool {
    let url = format!("http://{HEALTHZ_ADDRESS}:{HEALTHZ_PORT}/healthz");
    match http::get(client, &url, PROBE_TIMEOUT).await {
        Ok(r) => r.status == 200 && r.body.trim_ascii() == b"ok",
        Err(_) => false,
    }
}

/// kubelet's credentials after its TLS bootstrap.
pub struct ClientCertificate {
    pub server: String,
    /// From the certificate's subject: `system:node:<name>`.
    pub node_name: String,
    pub path: String,
    pub not_after: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// kubelet's kubeconfig and the certificate it names, once both exist and the certificate
/// is a client certificate of the cluster CA for a node. `Ok(None)`: not yet; `Err`: there
/// is one, and it is wrong.
pub fn client_certificate(ca_pem: &[u8]) -> Result<Option<ClientCertificate>, String> {
    client_certificate_in(std::path::Path::new(KUBELET_KUBECONFIG), ca_pem)
}

/// kubelet's kubeconfig as read: its server, the certificate's path, its chain and key.
struct Credentials {
    server: String,
    path: String,
    chain: Vec<CertificateDer<'static>>,
    key_pem: Vec<u8>,
}

/// What kubelet's kubeconfig names, not yet verified. `Ok(None)`: not yet.
fn read_in(kubeconfig: &std::path::Path) -> Result<Option<Credentials>, String> {
    let kubeconfig_name = kubeconfig.display().to_string();
    let Ok(text) = std::fs::read_to_string(kubeconfig) else {
        return Ok(None);
    };
    let config: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|e| format!("{kubeconfig_name} is not YAML: {e}"))?;
    let server = config["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let user = &config["users"][0]["user"];
    let (path, pem) = match (
        user["client-certificate"].as_str(),
        user["client-certificate-data"].as_str(),
    ) {
        (Some(p), _) => match std::fs::read(p) {
            Ok(pem) => (p.to_string(), pem),
            Err(_) => return Ok(None),
        },
        (None, Some(data)) => {
            use base64::Engine;
            let pem = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| format!("{kubeconfig_name}: client-certificate-data: {e}"))?;
            (kubeconfig_name.clone(), pem)
        }
        (None, None) => return Ok(None),
    };
    let key_pem = match user["client-key"].as_str() {
        Some(p) if p != path => std::fs::read(p).map_err(|e| format!("{p}: {e}"))?,
        _ => pem.clone(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if chain.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        server,
        path,
        chain,
        key_pem,
    }))
}

/// The node a certificate's subject names (`system:node:<name>`).
fn subject_node(path: &str, leaf: &CertificateDer<'_>) -> Result<String, String> {
    let info = crate::x509::parse_der(leaf).map_err(|e| format!("{path}: {e}"))?;
    info.subject_cn
        .as_deref()
        .and_then(|cn| cn.strip_prefix("system:node:"))
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "{path} is not a node's certificate (its subject is {:?})",
                info.subject_cn
            )
        })
}

/// The node kubelet's client certificate names, whether or not it can be used (expired,
/// another CA's): whose it is, not a credential.
pub fn named_node() -> Option<String> {
    let c = read_in(std::path::Path::new(KUBELET_KUBECONFIG)).ok()??;
    subject_node(&c.path, &c.chain[0]).ok()
}

fn client_certificate_in(
    kubeconfig: &std::path::Path,
    ca_pem: &[u8],
) -> Result<Option<ClientCertificate>, String> {
    let Some(Credentials {
        server,
        path,
        chain,
        key_pem,
    }) = read_in(kubeconfig)?
    else {
        return Ok(None);
    };
    let leaf = &chain[0];
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{path}: no private key: {e}"))?;
    issued_by(ca_pem, leaf, &chain[1..])
        .map_err(|e| format!("{path} is not a client certificate of the cluster CA: {e}"))?;
    let info = crate::x509::parse_der(leaf).map_err(|e| format!("{path}: {e}"))?;
    let node_name = subject_node(&path, leaf)?;
    Ok(Some(ClientCertificate {
        server,
        node_name,
        path,
        not_after: info.not_after,
        chain,
        key,
    }))
}

impl ClientCertificate {
    /// The chain and key, to authenticate as the node.
    pub fn identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.chain.clone(), self.key.clone_key())
    }
}

/// The certificate chains to the cluster CA and is valid for client authentication now.
fn issued_by(
    ca_pem: &[u8],
    leaf: &CertificateDer<'_>,
    rest: &[CertificateDer<'_>],
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(ca.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(leaf, rest, UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What reading the Node with kubelet's credentials said.
#[derive(Debug)]
pub enum NodeAnswer {
    /// The Node object, as the API server has it.
    Registered(serde_json::Value),
    /// Not yet (404), or a transient failure: the detail says which.
    NotYet(String),
}

/// Reads the node's own Node object with its credentials.
pub struct NodeReader {
    client: http::Client,
    url: String,
}

impl NodeReader {
    /// A client that trusts only the cluster CA and authenticates as the node.
    pub fn new(cert: &ClientCertificate, ca_pem: &[u8]) -> Result<NodeReader, String> {
        let ca: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(ca_pem)
            .map(|c| c.map(|c| c.to_vec()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let client = http::pinned_client_as(&ca, Some(cert.identity()))?;
        let url = format!(
            "{}/api/v1/nodes/{}",
            cert.server.trim_end_matches('/'),
            cert.node_name
        );
        Ok(NodeReader { client, url })
    }

    /// `GET <server>/api/v1/nodes/<name>`.
    pub async fn read(&self) -> NodeAnswer {
        match http::get(&self.client, &self.url, PROBE_TIMEOUT).await {
            Ok(r) if r.status == 200 => {
                NodeAnswer::Registered(serde_json::from_slice(&r.body).unwrap_or_default())
            }
            Ok(r) => NodeAnswer::NotYet(format!("{} answered {}", self.url, r.status)),
            Err(e) => NodeAnswer::NotYet(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    fn ca() -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/real-apiserver/pki/ca.crt")).unwrap()
    }

    /// A kubeconfig as kubelet writes it after its TLS bootstrap, naming `pem`.
    fn kubeconfig(dir: &std::path::Path, pem: &str) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: default-cluster\nusers:\n- name: default-auth\n  user:\n    client-certificate: {pem}\n    client-key: {pem}\n"
            ),
        )
        .unwrap();
        path
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kubejoin-ready-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_node_certificate_of_the_cluster_ca() {
        let d = scratch("ok");
        let k = kubeconfig(&d, &format!("{FIXTURES}/pki/node-client.pem"));
        let cert = client_certificate_in(&k, &ca()).unwrap().unwrap();
        assert_eq!(cert.node_name, "worker-1");
        assert_eq!(cert.server, "https://127.0.0.1:6443");
        assert!(cert.not_after.starts_with("21"), "{}", cert.not_after);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn not_yet_or_wrong() {
        let d = scratch("wrong");
        assert!(
            client_certificate_in(&d.join("missing"), &ca())
                .unwrap()
                .is_none()
        );
        // Named but not written yet.
        let k = kubeconfig(&d, &d.join("later.pem").display().to_string());
        assert!(client_certificate_in(&k, &ca()).unwrap().is_none());
        // Another CA's certificate for the same node.
        let k = kubeconfig(&d, &format!("{FIXTURES}/pki/impostor-node-client.pem"));
        let e = client_certificate_in(&k, &ca()).err().unwrap();
        assert!(
            e.contains("is not a client certificate of the cluster CA"),
            "{e}"
        );
        // The API server's serving certificate is no node's client certificate.
        let pem = d.join("server.pem");
        let mut both = std::fs::read(format!("{FIXTURES}/pki/apiserver-longlived.crt")).unwrap();
        both.extend(std::fs::read(format!("{FIXTURES}/real-apiserver/pki/apiserver.key")).unwrap());
        std::fs::write(&pem, both).unwrap();
        let k = kubeconfig(&d, &pem.display().to_string());
        assert!(client_certificate_in(&k, &ca()).is_err());
        std::fs::remove_dir_all(d).unwrap();
    }
}
