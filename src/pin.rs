//! kubeadm's `--discovery-token-ca-cert-hash` pins: `sha256:<hex of SHA-256(DER SPKI)>`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::x509::CertInfo;

/// A validated CA public-key pin.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaPin([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error(
        "a CA pin has the form sha256:<64 hex digits> (kubeadm's --discovery-token-ca-cert-hash)"
    )]
    Format,
    #[error("the pin's hash type {0:?} is not known; only sha256 is")]
    Algorithm(String),
    #[error("the pin's value is not 64 hex digits (32 bytes)")]
    Value,
}

impl CaPin {
    /// The pin of a certificate: SHA-256 of its DER SubjectPublicKeyInfo.
    pub fn of(cert: &CertInfo) -> CaPin {
        CaPin(Sha256::digest(&cert.spki).into())
    }

    /// The lower-case hex value without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl FromStr for CaPin {
    type Err = PinError;

    fn from_str(s: &str) -> Result<Self, PinError> {
        let parts: Vec<&str> = s.split(':').collect();
        let [algorithm, value] = parts[..] else {
            return Err(PinError::Format);
        };
        if !algorithm.eq_ignore_ascii_case("sha256") {
            return Err(PinError::Algorithm(algorithm.chars().take(16).collect()));
        }
        if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PinError::Value);
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&value[2 * i..2 * i + 2], 16).map_err(|_| PinError::Value)?;
        }
        Ok(CaPin(out))
    }
}

impl fmt::Display for CaPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for CaPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for CaPin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses a list of pins; one bad pin fails the whole list (kubeadm's rule).
pub fn parse_all<S: AsRef<str>>(pins: &[S]) -> Result<Vec<CaPin>, (usize, PinError)> {
    pins.iter()
        .enumerate()
        .map(|(i, p)| p.as_ref().parse().map_err(|e| (i, e)))
        .collect()
}

/// The first certificate of the bundle whose pin is one of `pins`. An empty pin set
/// matches nothing.
pub fn find_match<'a>(pins: &[CaPin], bundle: &'a [CertInfo]) -> Option<&'a CertInfo> {
    bundle.iter().find(|c| pins.contains(&CaPin::of(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/fixtures/vectors/ca-pin.json")).unwrap()
    }

    fn strings(v: &serde_json::Value) -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn every_certificate_vector() {
        let v = vectors();
        for cert in v["certificates"].as_array().unwrap() {
            let id = cert["id"].as_str().unwrap();
            let pem = cert["certificate_pem"].as_str().unwrap();
            let parsed = crate::x509::parse_pem_bundle(pem.as_bytes()).unwrap();
            assert_eq!(parsed.len(), 1, "{id}");
            assert_eq!(
                CaPin::of(&parsed[0]).to_string(),
                cert["expected_pin"].as_str().unwrap(),
                "{id}"
            );
        }
    }

    #[test]
    fn every_allow_vector() {
        let v = vectors();
        for case in v["allow"].as_array().unwrap() {
            let id = case["id"].as_str().unwrap();
            let got = parse_all(&strings(&case["pins"]));
            assert_eq!(
                got.is_ok(),
                case["expected_accepted"].as_bool().unwrap(),
                "{id}: {got:?}"
            );
            if let Ok(pins) = got {
                let hex: Vec<String> = pins.iter().map(CaPin::hex).collect();
                assert_eq!(hex, strings(&case["expected_normalized"]), "{id}");
            }
        }
    }

    #[test]
    fn every_check_vector() {
        let v = vectors();
        let certs = v["certificates"].as_array().unwrap();
        for case in v["check"].as_array().unwrap() {
            let id = case["id"].as_str().unwrap();
            let pins = parse_all(&strings(&case["pins"])).unwrap();
            let bundle: Vec<CertInfo> = strings(&case["certificates"])
                .iter()
                .map(|cid| {
                    let c = certs.iter().find(|c| c["id"] == cid.as_str()).unwrap();
                    crate::x509::parse_pem_bundle(c["certificate_pem"].as_str().unwrap().as_bytes())
                        .unwrap()
                        .remove(0)
                })
                .collect();
            assert_eq!(
                find_match(&pins, &bundle).is_some(),
                case["expected_match"].as_bool().unwrap(),
                "{id}"
            );
        }
    }

    #[test]
    fn real_apiserver_ca_pin() {
        let pem = include_str!("../tests/fixtures/real-apiserver/ca.crt");
        let cert = crate::x509::parse_pem_bundle(pem.as_bytes())
            .unwrap()
            .remove(0);
        assert_eq!(
            CaPin::of(&cert).to_string(),
            include_str!("../tests/fixtures/real-apiserver/ca-hash.txt").trim()
        );
        assert_eq!(cert.subject_cn.as_deref(), Some("kubernetes"));
    }

    #[test]
    fn display_is_lower_case_with_prefix() {
        let p: CaPin = format!("SHA256:{}", "AB".repeat(32)).parse().unwrap();
        assert_eq!(p.to_string(), format!("sha256:{}", "ab".repeat(32)));
    }

    #[test]
    fn rejects_extra_colons_and_signs() {
        assert_eq!(
            format!("sha256:{}:", "ab".repeat(32)).parse::<CaPin>(),
            Err(PinError::Format)
        );
        // from_str_radix would take a leading '+': the hex check must not.
        let plus = format!("sha256:+a{}", "ab".repeat(31));
        assert_eq!(plus.parse::<CaPin>(), Err(PinError::Value));
    }

    #[test]
    fn empty_pin_set_matches_nothing() {
        assert!(find_match(&[], &[]).is_none());
    }
}
