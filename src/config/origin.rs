//! Where a configuration value came from, the error that names it, and the value types
//! every table shares.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The configuration file; drop-ins are read from `config.d/` beside it.
pub const DEFAULT_PATH: &str = "/etc/kubejoin/config.toml";

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Flag(&'static str),
    Credential(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Flag(flag) => write!(f, "command line {flag}"),
            Origin::Credential(p) => write!(f, "systemd credential {}", p.display()),
        }
    }
}

/// A configuration error: where, which key, what is wrong and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {message}", key.as_ref().map(|k| format!(": {k}")).unwrap_or_default())]
pub struct ConfigError {
    pub origin: Origin,
    pub key: Option<String>,
    pub message: String,
    /// Trying again can fix it (`token_command` failed or timed out): exit status 1,
    /// not 2.
    pub transient: bool,
}

impl ConfigError {
    pub(crate) fn new(origin: &Origin, key: Option<&str>, message: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.clone(),
            key: key.map(str::to_string),
            message: message.into(),
            transient: false,
        }
    }
}

/// Parses a Go-style duration: `300ms`, `30s`, `5m`, `1h30m`. Zero is not allowed.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like \"30s\", \"5m\" or \"1h30m\"");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        rest = &rest[unit..];
        total = total.saturating_add(part);
    }
    if total.is_zero() {
        return Err(format!("{s:?} is zero; give a positive duration"));
    }
    Ok(total)
}

/// An IP network, `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: std::net::IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a CIDR such as 10.0.0.0/8 or fd00::/64");
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let network: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let bits = |ip: std::net::IpAddr| -> u128 {
            match ip {
                std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)),
                std::net::IpAddr::V6(v6) => u128::from(v6),
            }
        };
        if self.network.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let shift = width - u32::from(self.prefix);
        let mask = |v: u128| if shift >= 128 { 0 } else { v >> shift };
        mask(bits(ip)) == mask(bits(self.network))
    }
}
