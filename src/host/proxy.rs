//! A proxy for the internet (`[proxy]`), given to the units that fetch from it: the
//! container runtime (image pulls) and kubelet, as systemd drop-ins with `HTTP_PROXY`,
//! `HTTPS_PROXY` and a `NO_PROXY` completed with what must never go through a proxy:
//! loopback, the cluster's own names, the API servers and this node's addresses (pure).
//! kubejoin's own requests to the API server never use a proxy
//! ([`crate::discovery::http`]).

use std::net::IpAddr;

/// The proxy as configured: validated URLs and the user's `no_proxy`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Proxy {
    pub http: Option<String>,
    pub https: Option<String>,
    pub no_proxy: Vec<String>,
}

/// What is given to the units: the URLs and the completed `NO_PROXY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyEnv {
    pub http: Option<String>,
    pub https: Option<String>,
    pub no_proxy: Vec<String>,
}

/// kubelet's unit (as `kubelet::files` names it; host preparation comes below kubelet's
/// files).
pub const KUBELET_UNIT: &str = "kubelet.service";

/// The drop-in's file name in `<unit>.d/`.
pub const DROP_IN_NAME: &str = "90-kubejoin-proxy.conf";

/// Where a unit's drop-in goes.
pub fn drop_in_path(unit: &str) -> String {
    format!("/etc/systemd/system/{unit}.d/{DROP_IN_NAME}")
}

/// Names that never go through a proxy: loopback, the cluster's own names (Services as
/// `<name>.<namespace>.svc[.cluster.local]`), and the clouds' metadata service.
const ALWAYS_DIRECT: [&str; 6] = [
    "localhost",
    "127.0.0.1",
    "::1",
    ".svc",
    ".cluster.local",
    "169.254.169.254",
];

/// A proxy URL as the units take it: `http://` or `https://`, a host, maybe a port, and
/// no credentials (they would be in a unit file anyone can read, and in the plan).
pub fn validate_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("{s:?} is not an http:// or https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "{s:?} holds credentials, which would be readable in the units' drop-ins: \
             give the proxy's address only (a proxy that needs them: allow this node's \
             address on the proxy instead)"
        ));
    }
    if authority.is_empty()
        || authority.starts_with(':')
        || s.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        return Err(format!("{s:?} names no host"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// A `no_proxy` entry: a host name, a `.domain` suffix, an IP address or a CIDR.
pub fn validate_entry(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '/' | '*'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a host name, .domain, IP address or CIDR"
        ))
    }
}

/// `NO_PROXY` in full: what never goes through a proxy, then the API servers' hosts, this
/// node's addresses and the user's entries; each once, in that order.
pub fn complete(proxy: &Proxy, servers: &[String], node_addresses: &[IpAddr]) -> ProxyEnv {
    let mut no_proxy: Vec<String> = Vec::new();
    let entries = ALWAYS_DIRECT
        .iter()
        .map(|s| s.to_string())
        .chain(
            servers
                .iter()
                .map(|s| s.trim_matches(['[', ']']).to_string()),
        )
        .chain(node_addresses.iter().map(|a| a.to_string()))
        .chain(proxy.no_proxy.iter().cloned());
    for e in entries {
        if !no_proxy.contains(&e) {
            no_proxy.push(e);
        }
    }
    ProxyEnv {
        http: proxy.http.clone(),
        https: proxy.https.clone(),
        no_proxy,
    }
}

/// The variables, both spellings of each, as programs read one or the other.
pub fn variables(env: &ProxyEnv) -> Vec<(String, String)> {
    let no_proxy = env.no_proxy.join(",");
    let mut vars = Vec::new();
    for (name, value) in [
        ("HTTP_PROXY", env.http.as_deref()),
        ("HTTPS_PROXY", env.https.as_deref()),
        ("NO_PROXY", Some(no_proxy.as_str())),
    ] {
        if let Some(v) = value {
            vars.push((name.to_string(), v.to_string()));
            vars.push((name.to_lowercase(), v.to_string()));
        }
    }
    vars
}

/// The drop-in: [`variables`] as the unit's environment.
pub fn drop_in(env: &ProxyEnv) -> String {
    let lines: Vec<String> = variables(env)
        .iter()
        .map(|(k, v)| format!("Environment=\"{k}={v}\""))
        .collect();
    format!(
        "# Written by kubejoin: [proxy] from /etc/kubejoin/config.toml; changes here are overwritten.\n\
         [Service]\n{}\n",
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            validate_url("http://proxy.corp.example:3128/").unwrap(),
            "http://proxy.corp.example:3128"
        );
        assert!(validate_url("https://[fd00::1]:3128").is_ok());
        for bad in [
            "proxy:3128",
            "socks5://proxy:1080",
            "http://",
            "http://:3128",
            "http://user:secret@proxy:3128",
            "http://proxy:3128/a b",
        ] {
            assert!(validate_url(bad).is_err(), "{bad}");
        }
        let e = validate_url("http://user:secret@proxy:3128").unwrap_err();
        assert!(e.contains("credentials"), "{e}");
        assert!(validate_entry(".corp.example").is_ok());
        assert!(validate_entry("10.0.0.0/8").is_ok());
        assert!(validate_entry("a b").is_err());
        assert!(validate_entry("x\"y").is_err());
    }

    #[test]
    fn no_proxy_holds_what_must_go_direct_once() {
        let proxy = Proxy {
            http: Some("http://proxy:3128".into()),
            https: Some("http://proxy:3128".into()),
            no_proxy: vec![".corp.example".into(), "127.0.0.1".into()],
        };
        let env = complete(
            &proxy,
            &["api.corp.example".into(), "[fd00::10]".into()],
            &["10.0.0.7".parse().unwrap()],
        );
        assert_eq!(
            env.no_proxy,
            [
                "localhost",
                "127.0.0.1",
                "::1",
                ".svc",
                ".cluster.local",
                "169.254.169.254",
                "api.corp.example",
                "fd00::10",
                "10.0.0.7",
                ".corp.example"
            ]
        );
        let text = drop_in(&env);
        assert!(text.contains("[Service]\nEnvironment=\"HTTP_PROXY=http://proxy:3128\"\nEnvironment=\"http_proxy=http://proxy:3128\"\n"), "{text}");
        assert!(text.contains("Environment=\"NO_PROXY=localhost,127.0.0.1,::1,.svc,.cluster.local,169.254.169.254,api.corp.example,fd00::10,10.0.0.7,.corp.example\"\n"), "{text}");
        // Only HTTPS: no HTTP_PROXY line.
        let only = ProxyEnv { http: None, ..env };
        assert!(!drop_in(&only).contains("HTTP_PROXY"));
    }
}
