//! The bootstrap token: `<id>.<secret>`, exactly `[a-z0-9]{6}\.[a-z0-9]{16}`.
//!
//! The id is public (it names the Secret and the `jws-kubeconfig-<id>` key); the secret
//! never leaves this type except through [`BootstrapToken::secret`] and
//! [`BootstrapToken::expose`], and neither `Debug` nor `Display` shows it.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

pub const ID_LEN: usize = 6;
pub const SECRET_LEN: usize = 16;

/// Why a string is not a bootstrap token. Never carries the input itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error(
        "the token ends with a newline or other white space; remove it (for a file: printf '%s' \"$TOKEN\" > FILE)"
    )]
    Whitespace,
    #[error(
        "the token has {0} characters; a bootstrap token has 23: <6 characters>.<16 characters>"
    )]
    Length(usize),
    #[error("the token has no '.' after its 6-character id")]
    Separator,
    #[error(
        "character {0} of the token is not one of [a-z0-9] (bootstrap tokens are lower-case letters and digits)"
    )]
    Character(usize),
}

/// A validated bootstrap token.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: Zeroizing<String>,
}

impl BootstrapToken {
    /// The public token id, e.g. `abcdef`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret part. Only for computing the JWS and for the bootstrap kubeconfig.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The whole `<id>.<secret>` string, for the bootstrap kubeconfig only.
    pub fn expose(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}.{}", self.id, self.secret.as_str()))
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl FromStr for BootstrapToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        if s.is_empty() {
            return Err(TokenError::Empty);
        }
        if s.trim() != s {
            return Err(TokenError::Whitespace);
        }
        let len = s.chars().count();
        if len != ID_LEN + 1 + SECRET_LEN || s.len() != len {
            // A multi-byte character can never be valid; report it by position.
            if let Some(pos) = s.chars().position(|c| !c.is_ascii()) {
                return Err(TokenError::Character(pos + 1));
            }
            return Err(TokenError::Length(len));
        }
        let bytes = s.as_bytes();
        if bytes[ID_LEN] != b'.' {
            return Err(TokenError::Separator);
        }
        for (i, &b) in bytes.iter().enumerate() {
            if i != ID_LEN && !is_token_char(b) {
                return Err(TokenError::Character(i + 1));
            }
        }
        Ok(BootstrapToken {
            id: s[..ID_LEN].to_string(),
            secret: Zeroizing::new(s[ID_LEN + 1..].to_string()),
        })
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.<redacted>", self.id)
    }
}

/// The token as it is usually stored in a file: one trailing newline (`\n` or `\r\n`)
/// is tolerated, anything else must be the token exactly.
pub fn parse_file_contents(contents: &str) -> Result<BootstrapToken, TokenError> {
    let t = contents
        .strip_suffix("\r\n")
        .or_else(|| contents.strip_suffix('\n'))
        .unwrap_or(contents);
    t.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef";

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/fixtures/vectors/token-format.json")).unwrap()
    }

    #[test]
    fn every_token_string_vector() {
        let v = vectors();
        for case in v["token_string"].as_array().unwrap() {
            let input = case["input"].as_str().unwrap();
            let got = input.parse::<BootstrapToken>();
            assert_eq!(got.is_ok(), case["valid"].as_bool().unwrap(), "{input:?}");
            if let Ok(t) = got {
                assert_eq!(t.id(), case["token_id"].as_str().unwrap());
                assert_eq!(t.secret(), case["token_secret"].as_str().unwrap());
            }
        }
    }

    #[test]
    fn every_token_from_id_and_secret_vector() {
        let v = vectors();
        for case in v["token_from_id_and_secret"].as_array().unwrap() {
            let joined = format!(
                "{}.{}",
                case["token_id"].as_str().unwrap(),
                case["token_secret"].as_str().unwrap()
            );
            assert_eq!(
                joined.parse::<BootstrapToken>().is_ok(),
                case["valid"].as_bool().unwrap(),
                "{case}"
            );
        }
    }

    #[test]
    fn every_token_id_vector() {
        // An id is valid exactly when it makes a valid token with a valid secret.
        let v = vectors();
        for case in v["token_id"].as_array().unwrap() {
            let id = case["input"].as_str().unwrap();
            let valid =
                format!("{id}.{SECRET}").parse::<BootstrapToken>().is_ok() && id.len() == ID_LEN;
            assert_eq!(valid, case["valid"].as_bool().unwrap(), "{id:?}");
        }
    }

    #[test]
    fn parses_valid_token() {
        let t: BootstrapToken = format!("abcdef.{SECRET}").parse().unwrap();
        assert_eq!(t.id(), "abcdef");
        assert_eq!(t.secret(), SECRET);
        assert_eq!(t.expose().as_str(), format!("abcdef.{SECRET}"));
    }

    #[test]
    fn debug_and_display_redact_the_secret() {
        let t: BootstrapToken = format!("abcdef.{SECRET}").parse().unwrap();
        let shown = format!("{t} {t:?} {t:#?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("abcdef"));
    }

    #[test]
    fn errors_never_echo_the_input() {
        for bad in [
            "abcdef.0123456789abcdeF",
            "abcdef.0123456789abcdef\n",
            "abcdef-0123456789abcdef",
            "abcdef.0123456789abcdefg",
            "abcdéf.0123456789abcdef",
        ] {
            let e = bad.parse::<BootstrapToken>().unwrap_err();
            let msg = format!("{e} {e:?}");
            assert!(!msg.contains("0123456789"), "{msg}");
        }
    }

    #[test]
    fn error_kinds() {
        assert_eq!("".parse::<BootstrapToken>(), Err(TokenError::Empty));
        assert_eq!(
            format!("abcdef.{SECRET}\n").parse::<BootstrapToken>(),
            Err(TokenError::Whitespace)
        );
        assert_eq!(
            "abcdef.0123".parse::<BootstrapToken>(),
            Err(TokenError::Length(11))
        );
        assert_eq!(
            format!("abcdef:{SECRET}").parse::<BootstrapToken>(),
            Err(TokenError::Separator)
        );
        assert_eq!(
            format!("abcDef.{SECRET}").parse::<BootstrapToken>(),
            Err(TokenError::Character(4))
        );
    }

    #[test]
    fn file_contents_may_end_in_one_newline() {
        assert!(parse_file_contents(&format!("abcdef.{SECRET}\n")).is_ok());
        assert!(parse_file_contents(&format!("abcdef.{SECRET}\r\n")).is_ok());
        assert!(parse_file_contents(&format!("abcdef.{SECRET}\n\n")).is_err());
        assert!(parse_file_contents(&format!(" abcdef.{SECRET}\n")).is_err());
    }
}
