//! Detached JWS (RFC 7515 appendix F, HS256) as Kubernetes' bootstrap signer writes it
//! into `cluster-info`: `b64url(header) + ".." + b64url(HMAC-SHA256(secret, signing input))`.
//!
//! Verification follows Kubernetes: the stored value must be exactly the value we compute
//! (same header bytes, no padding, url-safe alphabet, no payload). The MAC part is compared
//! in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Why a stored signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("the signature is empty")]
    Empty,
    #[error("the signature is not a detached compact JWS (<header>..<signature>)")]
    Malformed,
    #[error("the signature's header is {found}, not {expected}")]
    Header { found: String, expected: String },
    #[error("the signature does not match the content and the token secret")]
    Mismatch,
}

/// The exact protected header Kubernetes signs with.
pub fn protected_header(token_id: &str) -> String {
    // token ids are [a-z0-9]; serde_json keeps any other input well-formed JSON.
    format!(
        "{{\"alg\":\"HS256\",\"kid\":{}}}",
        serde_json::Value::from(token_id)
    )
}

fn mac(header_b64: &str, content: &[u8], secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, including empty ones.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(header_b64.as_bytes());
    mac.update(b".");
    mac.update(URL_SAFE_NO_PAD.encode(content).as_bytes());
    mac
}

/// Computes the detached JWS for `content`, as the bootstrap signer does.
#[cfg(any(test, fuzzing))] // the fuzz targets sign what they feed discovery
pub fn sign_detached(content: &[u8], token_id: &str, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(protected_header(token_id));
    let tag = mac(&header, content, secret).finalize().into_bytes();
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Checks a stored detached JWS against `content`, the token id and its secret.
pub fn verify_detached(
    jws: &str,
    content: &[u8],
    token_id: &str,
    secret: &[u8],
) -> Result<(), JwsError> {
    if jws.is_empty() {
        return Err(JwsError::Empty);
    }
    let mut parts = jws.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed);
    };
    if !payload.is_empty() {
        return Err(JwsError::Malformed);
    }
    let expected_header = protected_header(token_id);
    if header != URL_SAFE_NO_PAD.encode(&expected_header) {
        let found = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(|s| describe(&s))
            .unwrap_or_else(|| "not base64url JSON".to_string());
        return Err(JwsError::Header {
            found,
            expected: expected_header,
        });
    }
    // The strict no-padding engine rejects '=', '+', '/' and non-canonical trailing bits,
    // so a decoded tag that verifies is exactly the string Kubernetes would compute.
    let tag = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwsError::Malformed)?;
    mac(header, content, secret)
        .verify_slice(&tag)
        .map_err(|_| JwsError::Mismatch)
}

/// Text from the wire, shortened and stripped of control characters for an error message.
fn describe(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(80)
        .collect();
    if s.chars().count() > 80 {
        format!("{clean}…")
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/fixtures/vectors/jws.json")).unwrap()
    }

    #[test]
    fn every_sign_vector() {
        let v = vectors();
        let sign = v["sign"].as_array().unwrap();
        assert!(!sign.is_empty());
        for case in sign {
            let id = case["id"].as_str().unwrap();
            let content = case["content"].as_str().unwrap();
            let token_id = case["token_id"].as_str().unwrap();
            let secret = case["token_secret"].as_str().unwrap();
            assert_eq!(
                protected_header(token_id),
                case["expected_protected_header"].as_str().unwrap(),
                "{id}"
            );
            let jws = sign_detached(content.as_bytes(), token_id, secret.as_bytes());
            assert_eq!(jws, case["expected_jws"].as_str().unwrap(), "{id}");
            // Every sign vector is also a positive verify vector.
            verify_detached(&jws, content.as_bytes(), token_id, secret.as_bytes())
                .unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }

    #[test]
    fn every_verify_vector() {
        let v = vectors();
        let verify = v["verify"].as_array().unwrap();
        assert!(!verify.is_empty());
        for case in verify {
            let id = case["id"].as_str().unwrap();
            let got = verify_detached(
                case["jws"].as_str().unwrap(),
                case["content"].as_str().unwrap().as_bytes(),
                case["token_id"].as_str().unwrap(),
                case["token_secret"].as_str().unwrap().as_bytes(),
            );
            assert_eq!(
                got.is_ok(),
                case["expected_valid"].as_bool().unwrap(),
                "{id}: {got:?}"
            );
        }
    }

    #[test]
    fn round_trip() {
        let jws = sign_detached(b"payload", "abc123", b"tokenSecret");
        assert!(jws.contains(".."));
        verify_detached(&jws, b"payload", "abc123", b"tokenSecret").unwrap();
        assert_eq!(
            verify_detached(&jws, b"payload\n", "abc123", b"tokenSecret"),
            Err(JwsError::Mismatch)
        );
    }

    #[test]
    fn header_is_compact_with_alg_then_kid() {
        assert_eq!(
            protected_header("abc123"),
            r#"{"alg":"HS256","kid":"abc123"}"#
        );
    }

    #[test]
    fn wrong_kid_is_reported_with_the_header_seen() {
        let jws = sign_detached(b"payload", "abc123", b"s");
        match verify_detached(&jws, b"payload", "zzz999", b"s") {
            Err(JwsError::Header { found, .. }) => assert!(found.contains("abc123")),
            other => panic!("{other:?}"),
        }
    }
}
