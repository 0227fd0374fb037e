//! Registries as containerd reaches them (`[registries."<host>"]`): mirrors tried before
//! the registry itself, and the CA that its (and its mirrors') certificates are issued
//! by. Written as containerd's `hosts.toml`, one directory per registry under the CRI
//! plugin's `config_path` (the format of containerd 1.5 and later, the only one 2.x
//! reads). Pure.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// `config_path` when kubejoin sets it (containerd 1.x has none by default).
pub const CERTS_DIR: &str = "/etc/containerd/certs.d";

/// One registry, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// `host` or `host:port`, as image names spell it (`registry.k8s.io`, `docker.io`).
    pub name: String,
    /// `https://` or `http://` URLs, tried in order before the registry itself.
    pub mirrors: Vec<String>,
    /// A PEM file with the CA(s) that the registry's and its mirrors' certificates chain
    /// to, when it is not a public one.
    pub ca: Option<PathBuf>,
    /// A file (mode 0600) holding `username:password` for the registry: given to kubelet,
    /// which hands them to the runtime with each pull of the registry's images.
    pub credentials: Option<PathBuf>,
}

/// kubelet's docker-config file of registry credentials (in its root directory, read by
/// every kubelet kubejoin supports).
pub const KUBELET_AUTH: &str = "/var/lib/kubelet/config.json";

/// Text that holds a secret: never shown by `Debug`, wiped when dropped.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub Zeroizing<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(Zeroizing::new(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A credentials file's text: one line, `username:password`, both non-empty. The error
/// never quotes the text.
pub fn parse_credentials(text: &str) -> Result<(), String> {
    let line = text.trim_end_matches(['\n', '\r']);
    match line.split_once(':') {
        Some((user, pass)) if !user.is_empty() && !pass.is_empty() && !line.contains('\n') => {
            Ok(())
        }
        _ => Err("it does not hold one line of username:password".into()),
    }
}

/// The `auths` key kubelet matches a registry's images with: Docker Hub's is Docker's
/// own index URL, the only one kubelet's keyring uses for an image named without a
/// registry (`nginx`, `library/nginx`); any other registry is its name.
fn auth_key(registry: &str) -> String {
    if registry == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        registry.into()
    }
}

/// kubelet's config.json with `auths` set for each `(registry, "username:password")`,
/// other entries and keys of an existing file kept.
pub fn kubelet_auth(current: Option<&str>, entries: &[(&str, &Secret)]) -> Result<Secret, String> {
    use base64::Engine;
    let mut doc: serde_json::Map<String, serde_json::Value> = match current {
        Some(text) if !text.trim().is_empty() => serde_json::from_str(text)
            .map_err(|_| format!("{KUBELET_AUTH} is not a JSON object"))?,
        _ => serde_json::Map::new(),
    };
    let auths = doc
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(Default::default()))
        .as_object_mut()
        .ok_or_else(|| format!("{KUBELET_AUTH}: auths is not an object"))?;
    for (registry, credentials) in entries {
        let line = credentials.as_str().trim_end_matches(['\n', '\r']);
        let encoded = base64::engine::general_purpose::STANDARD.encode(line);
        auths.insert(auth_key(registry), serde_json::json!({ "auth": encoded }));
    }
    let mut text = serde_json::to_string_pretty(&doc).expect("a JSON map serializes");
    text.push('\n');
    Ok(Secret::new(text))
}

/// A registry's name as image references spell it: a host (a DNS name or an IP address,
/// IPv6 in brackets) with an optional port; no scheme, no path.
pub fn validate_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.contains("://") {
        return Err(format!(
            "{s:?} is a URL: name the registry as image names do (registry.example.com:5000)"
        ));
    }
    let ok = !s.is_empty()
        && !s.starts_with(['.', '-', ':'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !ok {
        return Err(format!(
            "{s:?} is not a registry host (a name or address, maybe with :port)"
        ));
    }
    Ok(s.to_ascii_lowercase())
}

/// A mirror's URL: `https://` (or `http://` for a registry without TLS), a host, maybe a
/// port and a path; no credentials (the file is readable by anyone).
pub fn validate_mirror(s: &str) -> Result<String, String> {
    let s = s.trim();
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("{s:?} is not an https:// or http:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "{s:?} holds credentials, which would be readable in containerd's hosts.toml"
        ));
    }
    validate_name(authority).map_err(|_| format!("{s:?} names no host"))?;
    if s.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        return Err(format!("{s:?} is not a URL"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// The registry's own endpoint, as containerd's `server`: Docker Hub's is not its name.
pub fn server(name: &str) -> String {
    match name {
        "docker.io" => "https://registry-1.docker.io".into(),
        other => format!("https://{other}"),
    }
}

/// Where a registry's hosts.toml goes under `certs_dir`.
pub fn hosts_path(certs_dir: &str, name: &str) -> PathBuf {
    Path::new(certs_dir).join(name).join("hosts.toml")
}

fn quoted(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

/// `hosts.toml` for `r`: each mirror may pull and resolve (what a mirror of a registry
/// does), then the registry itself; the CA for each. Without mirrors the registry is
/// its own `[host]` entry: containerd 1.6 refuses a hosts.toml without one ("invalid
/// `host` tree", found against containerd 1.6.20).
pub fn hosts_toml(r: &Registry) -> String {
    let ca =
        r.ca.as_ref()
            .map(|p| format!("ca = {}\n", quoted(&p.display().to_string())))
            .unwrap_or_default();
    let server = server(&r.name);
    let mut out = format!(
        "# Written by kubejoin from [registries.{}] in /etc/kubejoin/config.toml.\nserver = {}\n",
        quoted(&r.name),
        quoted(&server),
    );
    if r.mirrors.is_empty() {
        out.push_str(&format!(
            "\n[host.{}]\ncapabilities = [\"pull\", \"resolve\", \"push\"]\n{ca}",
            quoted(&server)
        ));
        return out;
    }
    out.push_str(&ca);
    for m in &r.mirrors {
        out.push_str(&format!(
            "\n[host.{}]\ncapabilities = [\"pull\", \"resolve\"]\n{ca}",
            quoted(m)
        ));
    }
    out
}

/// Whether `path` is a hosts.toml of kubejoin's kind (a registry's directory under a
/// certs directory): those it wrote and no longer wants are removed.
pub fn is_hosts_toml(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "hosts.toml")
        && path
            .parent()
            .and_then(Path::parent)
            .is_some_and(|d| d.file_name().is_some_and(|n| n == "certs.d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_mirrors_are_checked() {
        assert_eq!(validate_name("Registry.k8s.io").unwrap(), "registry.k8s.io");
        assert_eq!(validate_name("10.0.0.5:5000").unwrap(), "10.0.0.5:5000");
        assert!(
            validate_name("https://registry.k8s.io")
                .unwrap_err()
                .contains("is a URL")
        );
        for bad in ["", "a b", "reg/path", ":5000"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            validate_mirror("https://mirror.corp:5000/").unwrap(),
            "https://mirror.corp:5000"
        );
        assert_eq!(
            validate_mirror("http://10.0.0.5:5000/v2/k8s").unwrap(),
            "http://10.0.0.5:5000/v2/k8s"
        );
        assert!(validate_mirror("mirror.corp").is_err());
        assert!(
            validate_mirror("https://u:p@mirror.corp")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(validate_mirror("https://").is_err());
    }

    #[test]
    fn hosts_toml_lists_the_mirrors_then_the_registry() {
        let r = Registry {
            name: "docker.io".into(),
            mirrors: vec!["https://mirror.corp:5000".into(), "http://10.0.0.5".into()],
            ca: Some("/etc/kubejoin/corp-ca.pem".into()),
            credentials: None,
        };
        assert_eq!(
            hosts_toml(&r),
            "# Written by kubejoin from [registries.\"docker.io\"] in /etc/kubejoin/config.toml.\n\
             server = \"https://registry-1.docker.io\"\n\
             ca = \"/etc/kubejoin/corp-ca.pem\"\n\
             \n[host.\"https://mirror.corp:5000\"]\ncapabilities = [\"pull\", \"resolve\"]\nca = \"/etc/kubejoin/corp-ca.pem\"\n\
             \n[host.\"http://10.0.0.5\"]\ncapabilities = [\"pull\", \"resolve\"]\nca = \"/etc/kubejoin/corp-ca.pem\"\n"
        );
        let own = Registry {
            name: "registry.corp:5000".into(),
            mirrors: Vec::new(),
            ca: None,
            credentials: None,
        };
        let text = hosts_toml(&own);
        assert!(
            text.ends_with("server = \"https://registry.corp:5000\"\n\n[host.\"https://registry.corp:5000\"]\ncapabilities = [\"pull\", \"resolve\", \"push\"]\n"),
            "{text}"
        );
        // What containerd reads is TOML.
        assert!(text.parse::<toml_edit::DocumentMut>().is_ok());
        assert!(hosts_toml(&r).parse::<toml_edit::DocumentMut>().is_ok());
        assert_eq!(
            hosts_path(CERTS_DIR, "registry.corp:5000"),
            Path::new("/etc/containerd/certs.d/registry.corp:5000/hosts.toml")
        );
        assert!(is_hosts_toml(&hosts_path(CERTS_DIR, "docker.io")));
        assert!(!is_hosts_toml(Path::new("/etc/containerd/config.toml")));
    }

    #[test]
    fn credentials_go_to_kubelets_config_json_and_nowhere_else() {
        assert!(parse_credentials("robot:s3cret\n").is_ok());
        for bad in ["", "robot", ":x", "robot:", "a:b\nc:d\n"] {
            let e = parse_credentials(bad).unwrap_err();
            assert!(!e.contains("robot") || bad.is_empty(), "{e}");
        }
        let secret = Secret::new("robot:s3cret\n".into());
        assert_eq!(format!("{secret:?}"), "<redacted>");
        let out = kubelet_auth(None, &[("registry.corp:5000", &secret)]).unwrap();
        // base64("robot:s3cret")
        assert_eq!(
            out.as_str(),
            "{\n  \"auths\": {\n    \"registry.corp:5000\": {\n      \"auth\": \"cm9ib3Q6czNjcmV0\"\n    }\n  }\n}\n"
        );
        // Another registry's entry and other keys stay.
        let theirs =
            "{\"auths\":{\"docker.io\":{\"auth\":\"eDp5\"}},\"HttpHeaders\":{\"A\":\"b\"}}";
        let merged = kubelet_auth(Some(theirs), &[("registry.corp:5000", &secret)]).unwrap();
        let v: serde_json::Value = serde_json::from_str(merged.as_str()).unwrap();
        assert_eq!(v["auths"]["docker.io"]["auth"], "eDp5");
        assert_eq!(v["HttpHeaders"]["A"], "b");
        assert_eq!(v["auths"]["registry.corp:5000"]["auth"], "cm9ib3Q6czNjcmV0");
        assert!(kubelet_auth(Some("[]"), &[]).is_err());
        let hub = kubelet_auth(None, &[("docker.io", &secret)]).unwrap();
        assert!(
            hub.as_str().contains("\"https://index.docker.io/v1/\""),
            "{}",
            hub.as_str()
        );
    }
}
