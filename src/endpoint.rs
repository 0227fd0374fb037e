//! An API server endpoint: `https://host[:port]` or kubeadm's `host:port`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Dns(String),
}

/// A validated `https` endpoint with no path, query or credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("only https:// API server URLs are allowed")]
    Scheme,
    #[error("expected https://HOST[:PORT] or HOST:PORT with no path, query or user")]
    Shape,
    #[error("the host is not an IP address or a DNS name")]
    Host,
    #[error("the port is not a number from 1 to 65535")]
    Port,
}

fn valid_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && rustls_pki_types::ServerName::try_from(s).is_ok()
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, EndpointError> {
        let (authority, default_port) = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => {
                (rest.strip_suffix('/').unwrap_or(rest), Some(443))
            }
            Some(_) => return Err(EndpointError::Scheme),
            None => (s, None),
        };
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(EndpointError::Shape);
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or(EndpointError::Host)?;
            let ip: Ipv6Addr = addr.parse().map_err(|_| EndpointError::Host)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(EndpointError::Shape)?),
            };
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let host = if let Ok(ip) = host.parse::<IpAddr>() {
                Host::Ip(ip)
            } else if valid_dns_name(host) && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            {
                Host::Dns(host.to_ascii_lowercase())
            } else {
                return Err(EndpointError::Host);
            };
            (host, port)
        };
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(EndpointError::Port),
            },
            // kubeadm's apiServerEndpoint is HOST:PORT; a URL may leave the port out.
            None => default_port.ok_or(EndpointError::Port)?,
        };
        Ok(Endpoint { host, port })
    }
}

impl Endpoint {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as a TLS server name: a DNS name or an IP address (no brackets).
    pub fn host_name(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Dns(name) => name.clone(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "https://[{ip}]:{}", self.port),
            Host::Ip(ip) => write!(f, "https://{ip}:{}", self.port),
            Host::Dns(name) => write!(f, "https://{name}:{}", self.port),
        }
    }
}

impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        s.parse::<Endpoint>()
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(ok("https://203.0.113.10:6443"), "https://203.0.113.10:6443");
        assert_eq!(ok("203.0.113.10:6443"), "https://203.0.113.10:6443");
        assert_eq!(ok("https://127.0.0.1"), "https://127.0.0.1:443");
        assert_eq!(
            ok("https://API.Example.com:6443/"),
            "https://api.example.com:6443"
        );
        assert_eq!(ok("[::1]:6443"), "https://[::1]:6443");
        assert_eq!(ok("https://[2001:db8::1]"), "https://[2001:db8::1]:443");
    }

    #[test]
    fn rejected_forms() {
        use EndpointError::*;
        for (s, e) in [
            ("http://10.0.0.1:6443", Scheme),
            ("https://10.0.0.1:6443/api", Shape),
            ("https://user@10.0.0.1:6443", Shape),
            ("10.0.0.1", Port),
            ("10.0.0.1:0", Port),
            ("10.0.0.1:+80", Port),
            ("10.0.0.1:99999", Port),
            ("https://bad_host:6443", Host),
            ("https://999.1.1.1:6443", Host),
            ("https://[::1:6443", Host),
            ("", Shape),
        ] {
            assert_eq!(s.parse::<Endpoint>(), Err(e), "{s}");
        }
    }
}
