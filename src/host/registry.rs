//! Registries as containerd reaches them (`[registries."<host>"]`): mirrors tried before
//! the registry itself, and the CA that its (and its mirrors') certificates are issued
//! by. Written as containerd's `hosts.toml`, one directory per registry under the CRI
//! plugin's `config_path` (the format of containerd 1.5 and later, the only one 2.x
//! reads). Pure.

use std::path::{Path, PathBuf};

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
}
