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
}

impl ConfigError {
    pub(crate) fn new(origin: &Origin, key: Option<&str>, message: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.clone(),
            key: key.map(str::to_string),
            message: message.into(),
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
