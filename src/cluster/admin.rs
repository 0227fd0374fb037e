//! The admin kubeconfig of `kubejoin cluster` and `kubejoin token`: its current context's
//! server, CA and credentials (a client certificate and key, or a bearer token), read as
//! kubectl reads them. The credentials stay in memory, are sent only to that server over
//! TLS verified against that CA, and never appear in `Debug` output, logs or errors.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Where the admin kubeconfig is looked for, as kubectl and kubeadm do: `--kubeconfig`,
/// else the first file of `$KUBECONFIG`, else `~/.kube/config`, else
/// `/etc/kubernetes/admin.conf`.
pub fn locate(flag: Option<&Path>, env: Option<&str>, home: Option<&Path>) -> PathBuf {
    if let Some(f) = flag {
        return f.to_path_buf();
    }
    if let Some(first) = env.and_then(|e| e.split(':').find(|p| !p.is_empty())) {
        return PathBuf::from(first);
    }
    if let Some(home) = home {
        let user = home.join(".kube/config");
        if user.exists() {
            return user;
        }
    }
    PathBuf::from("/etc/kubernetes/admin.conf")
}

/// How the admin authenticates.
pub enum Credential {
    ClientCertificate {
        cert_pem: Vec<u8>,
        key_pem: Zeroizing<Vec<u8>>,
    },
    Token(Zeroizing<String>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::ClientCertificate { .. } => "ClientCertificate(<redacted>)",
            Credential::Token(_) => "Token(<redacted>)",
        })
    }
}

/// The current context of an admin kubeconfig.
#[derive(Debug)]
pub struct Admin {
    /// The server as written, e.g. `https://10.0.0.1:6443`, without a trailing slash.
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub credential: Credential,
    pub user: String,
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    clusters: Option<Vec<Named<Cluster>>>,
    #[serde(default)]
    contexts: Option<Vec<Named<Context>>>,
    #[serde(default)]
    users: Option<Vec<Named<User>>>,
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    item: T,
}

#[derive(Deserialize, Default)]
struct Cluster {
    #[serde(default)]
    server: Option<String>,
    #[serde(default, rename = "certificate-authority-data")]
    ca_data: Option<String>,
    #[serde(default, rename = "certificate-authority")]
    ca_file: Option<String>,
    #[serde(default, rename = "insecure-skip-tls-verify")]
    insecure: Option<bool>,
}

#[derive(Deserialize, Default)]
struct Context {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    user: String,
}

#[derive(Deserialize, Default)]
struct User {
    #[serde(default, rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(default, rename = "client-certificate")]
    cert_file: Option<String>,
    #[serde(default, rename = "client-key-data")]
    key_data: Option<Zeroizing<String>>,
    #[serde(default, rename = "client-key")]
    key_file: Option<String>,
    #[serde(default)]
    token: Option<Zeroizing<String>>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(default)]
    exec: Option<serde_json::Value>,
    #[serde(default, rename = "auth-provider")]
    auth_provider: Option<serde_json::Value>,
}

/// Why an admin kubeconfig cannot be used. Never quotes a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("it is not a kubeconfig: {0}")]
    Yaml(String),
    #[error("it has no current-context")]
    NoContext,
    #[error("{kind} {name:?} is not defined in it")]
    Missing { kind: &'static str, name: String },
    #[error("cluster {0:?} has no server")]
    NoServer(String),
    #[error("cluster {0:?} has server {1:?}; only https:// servers are used")]
    NotHttps(String, String),
    #[error(
        "cluster {0:?} sets insecure-skip-tls-verify; kubejoin sends admin credentials only over TLS verified against the cluster CA"
    )]
    Insecure(String),
    #[error(
        "cluster {0:?} has neither certificate-authority-data nor certificate-authority; kubejoin trusts only the cluster's own CA"
    )]
    NoCa(String),
    #[error(
        "user {0:?} authenticates with an exec or auth-provider plugin, which kubejoin does not run; use a kubeconfig with a client certificate or a token (kubeadm's /etc/kubernetes/admin.conf)"
    )]
    Plugin(String),
    #[error("user {0:?} has no client certificate and key and no token")]
    NoCredential(String),
    #[error("{what} of {name:?} is not base64")]
    Base64 { what: &'static str, name: String },
    #[error("cannot read {path}: {detail}")]
    Read { path: String, detail: String },
}

impl AdminError {
    pub fn fix(&self) -> String {
        match self {
            AdminError::Read { .. } => "pass a readable admin kubeconfig with --kubeconfig (kubeadm's is /etc/kubernetes/admin.conf); run as a user who may read it".into(),
            _ => "pass an admin kubeconfig with --kubeconfig: a cluster with https server and its CA, a user with a client certificate and key or a token (kubeadm's /etc/kubernetes/admin.conf is one)".into(),
        }
    }
}

/// Parses an admin kubeconfig; `read` reads the files it names (relative to `dir`, the
/// kubeconfig's directory, as kubectl resolves them).
pub fn parse(
    yaml: &str,
    dir: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<Admin, AdminError> {
    let config: Config = serde_saphyr::from_str(yaml)
        .map_err(|e| AdminError::Yaml(e.to_string().lines().next().unwrap_or_default().into()))?;
    let current = config
        .current_context
        .filter(|c| !c.is_empty())
        .ok_or(AdminError::NoContext)?;
    let context = find(config.contexts, &current, "context")?;
    let cluster = find(config.clusters, &context.cluster, "cluster")?;
    let user = find(config.users, &context.user, "user")?;
    let cname = context.cluster.clone();
    let uname = context.user.clone();

    let server = cluster
        .server
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AdminError::NoServer(cname.clone()))?;
    if !server.starts_with("https://") {
        return Err(AdminError::NotHttps(cname, server));
    }
    if cluster.insecure == Some(true) {
        return Err(AdminError::Insecure(cname));
    }
    let file = |f: &str| -> Result<Vec<u8>, AdminError> {
        let path = dir.join(f);
        read(&path).map_err(|e| AdminError::Read {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    };
    let b64 = |data: &str, what: &'static str, name: &str| {
        STANDARD
            .decode(data.trim())
            .map_err(|_| AdminError::Base64 {
                what,
                name: name.to_string(),
            })
    };
    // Embedded data wins over a file, as kubectl reads them.
    let embedded_or_file =
        |data: Option<&str>, path: Option<&str>, what: &'static str, name: &str| match (
            data.filter(|d| !d.is_empty()),
            path.filter(|f| !f.is_empty()),
        ) {
            (Some(d), _) => b64(d, what, name).map(Some),
            (None, Some(f)) => file(f).map(Some),
            (None, None) => Ok(None),
        };
    let ca_pem = embedded_or_file(
        cluster.ca_data.as_deref(),
        cluster.ca_file.as_deref(),
        "certificate-authority-data",
        &cname,
    )?
    .ok_or(AdminError::NoCa(cname))?;
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(AdminError::Plugin(uname));
    }
    let cert = embedded_or_file(
        user.cert_data.as_deref(),
        user.cert_file.as_deref(),
        "client-certificate-data",
        &uname,
    )?;
    let key = embedded_or_file(
        user.key_data.as_deref().map(String::as_str),
        user.key_file.as_deref(),
        "client-key-data",
        &uname,
    )?
    .map(Zeroizing::new);
    let credential = match (cert, key, &user.token, &user.token_file) {
        (Some(cert_pem), Some(key_pem), _, _) => {
            Credential::ClientCertificate { cert_pem, key_pem }
        }
        (_, _, Some(t), _) if !t.is_empty() => Credential::Token(t.clone()),
        (_, _, _, Some(f)) if !f.is_empty() => {
            let bytes = Zeroizing::new(file(f)?);
            Credential::Token(Zeroizing::new(
                String::from_utf8_lossy(&bytes).trim().to_string(),
            ))
        }
        _ => return Err(AdminError::NoCredential(uname)),
    };
    Ok(Admin {
        server: server.trim_end_matches('/').to_string(),
        ca_pem,
        credential,
        user: uname,
    })
}

fn find<T>(items: Option<Vec<Named<T>>>, name: &str, kind: &'static str) -> Result<T, AdminError> {
    items
        .unwrap_or_default()
        .into_iter()
        .find(|n| n.name == name)
        .map(|n| n.item)
        .ok_or_else(|| AdminError::Missing {
            kind,
            name: name.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: pki/ca.crt\nusers:\n- name: admin\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key: /abs/admin.key\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: admin\ncurrent-context: local\n";

    fn files(p: &Path) -> std::io::Result<Vec<u8>> {
        match p.to_str().unwrap() {
            "/etc/k/pki/ca.crt" => Ok(b"CA".to_vec()),
            "/abs/admin.key" => Ok(b"KEY".to_vec()),
            "/etc/k/token" => Ok(b"s3cret\n".to_vec()),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    #[test]
    fn reads_the_current_context_with_files_relative_to_the_kubeconfig() {
        let a = parse(CONF, Path::new("/etc/k"), &files).unwrap();
        assert_eq!(a.server, "https://127.0.0.1:6443");
        assert_eq!(a.ca_pem, b"CA");
        assert_eq!(a.user, "admin");
        match &a.credential {
            Credential::ClientCertificate { cert_pem, key_pem } => {
                assert_eq!(cert_pem, b"CERT");
                assert_eq!(key_pem.as_slice(), b"KEY");
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{a:?}").contains("KEY"));
    }

    #[test]
    fn a_token_file_and_the_refusals() {
        let token = CONF.replace(
            "    client-certificate-data: Q0VSVA==\n    client-key: /abs/admin.key\n",
            "    tokenFile: token\n",
        );
        let a = parse(&token, Path::new("/etc/k"), &files).unwrap();
        assert!(matches!(&a.credential, Credential::Token(t) if t.as_str() == "s3cret"));
        assert!(!format!("{a:?}").contains("s3cret"));
        let insecure = CONF.replace(
            "    certificate-authority: pki/ca.crt\n",
            "    insecure-skip-tls-verify: true\n",
        );
        assert_eq!(
            parse(&insecure, Path::new("/etc/k"), &files).unwrap_err(),
            AdminError::Insecure("local".into())
        );
        let http = CONF.replace("https://127", "http://127");
        assert!(matches!(
            parse(&http, Path::new("/etc/k"), &files),
            Err(AdminError::NotHttps(..))
        ));
        let exec = token.replace("    tokenFile: token\n", "    exec: {command: aws}\n");
        assert_eq!(
            parse(&exec, Path::new("/etc/k"), &files).unwrap_err(),
            AdminError::Plugin("admin".into())
        );
        let missing = CONF.replace("current-context: local", "current-context: other");
        assert!(matches!(
            parse(&missing, Path::new("/etc/k"), &files),
            Err(AdminError::Missing {
                kind: "context",
                ..
            })
        ));
        let unreadable = parse(CONF, Path::new("/elsewhere"), &files).unwrap_err();
        assert!(
            matches!(unreadable, AdminError::Read { .. }),
            "{unreadable}"
        );
    }

    #[test]
    fn where_the_kubeconfig_is_looked_for() {
        assert_eq!(
            locate(Some(Path::new("/a")), Some("/b"), None),
            PathBuf::from("/a")
        );
        assert_eq!(locate(None, Some(":/b:/c"), None), PathBuf::from("/b"));
        assert_eq!(
            locate(None, None, Some(Path::new("/nonexistent-home"))),
            PathBuf::from("/etc/kubernetes/admin.conf")
        );
    }
}
