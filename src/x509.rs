//! Just enough X.509 to pin a CA: PEM bundles, the DER SubjectPublicKeyInfo, the subject's
//! common name and the validity period. A small DER walker: it reads the fields kubeadm
//! reads and nothing else, and rejects anything that is not well-formed DER TLV.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("no PEM certificate found")]
    NoCertificate,
    #[error("PEM data is malformed: {0}")]
    Pem(String),
    #[error("certificate {index} is not a well-formed X.509 certificate ({what})")]
    Der { index: usize, what: &'static str },
}

/// The parts of a certificate that discovery needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    /// The DER SubjectPublicKeyInfo (tag and length included).
    pub spki: Vec<u8>,
    pub subject_cn: Option<String>,
    /// As written in the certificate, normalised to `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_before: String,
    pub not_after: String,
}

/// Parses every certificate of a PEM bundle, in order.
pub fn parse_pem_bundle(pem: &[u8]) -> Result<Vec<CertInfo>, CertError> {
    let mut out = Vec::new();
    for (index, der) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let der = der.map_err(|e| CertError::Pem(e.to_string()))?;
        out.push(parse_der(&der).map_err(|what| CertError::Der { index, what })?);
    }
    if out.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(out)
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const CONTEXT_0: u8 = 0xa0;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// One DER element: its tag, its content, and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

/// Reads one element from the front of `input`, returning it and the rest.
fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), &'static str> {
    let (&tag, rest) = input.split_first().ok_or("truncated")?;
    let (&first, mut rest) = rest.split_first().ok_or("truncated")?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad length");
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err("truncated");
    }
    let header_len = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        content: &rest[..len],
        raw: &input[..header_len + len],
    };
    Ok((tlv, &rest[len..]))
}

fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(Tlv<'a>, &'a [u8]), &'static str> {
    let (tlv, rest) = read_tlv(input)?;
    if tlv.tag != tag {
        return Err(what);
    }
    Ok((tlv, rest))
}

/// Parses one DER certificate.
pub fn parse_der(der: &[u8]) -> Result<CertInfo, &'static str> {
    let (cert, trailing) = expect(der, SEQUENCE, "not a SEQUENCE")?;
    if !trailing.is_empty() {
        return Err("trailing data");
    }
    let (tbs, _) = expect(cert.content, SEQUENCE, "no tbsCertificate")?;
    let mut rest = tbs.content;
    // version [0] EXPLICIT, optional
    if rest.first() == Some(&CONTEXT_0) {
        rest = read_tlv(rest)?.1;
    }
    let (_serial, rest) = read_tlv(rest)?;
    let (_sig_alg, rest) = expect(rest, SEQUENCE, "no signature algorithm")?;
    let (_issuer, rest) = expect(rest, SEQUENCE, "no issuer")?;
    let (validity, rest) = expect(rest, SEQUENCE, "no validity")?;
    let (subject, rest) = expect(rest, SEQUENCE, "no subject")?;
    let (spki, _) = expect(rest, SEQUENCE, "no subjectPublicKeyInfo")?;

    let (nb, after) = read_tlv(validity.content)?;
    let (na, _) = read_tlv(after)?;
    Ok(CertInfo {
        der: der.to_vec(),
        spki: spki.raw.to_vec(),
        subject_cn: common_name(subject.content),
        not_before: time(&nb)?,
        not_after: time(&na)?,
    })
}

fn common_name(mut rdns: &[u8]) -> Option<String> {
    while !rdns.is_empty() {
        let (set, rest) = expect(rdns, SET, "").ok()?;
        rdns = rest;
        let (atv, _) = expect(set.content, SEQUENCE, "").ok()?;
        let (oid, value) = expect(atv.content, OID, "").ok()?;
        if oid.content == OID_COMMON_NAME {
            let (value, _) = read_tlv(value).ok()?;
            return String::from_utf8(value.content.to_vec()).ok();
        }
    }
    None
}

fn time(t: &Tlv<'_>) -> Result<String, &'static str> {
    let s = std::str::from_utf8(t.content).map_err(|_| "bad time")?;
    let digits = s.strip_suffix('Z').ok_or("time not in UTC")?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad time");
    }
    let full = match (t.tag, digits.len()) {
        // RFC 5280: UTCTime years 50..99 are 19xx, 00..49 are 20xx.
        (UTC_TIME, 12) => {
            let century = if digits[..2] >= *"50" { "19" } else { "20" };
            format!("{century}{digits}")
        }
        (GENERALIZED_TIME, 14) => digits.to_string(),
        _ => return Err("bad time"),
    };
    Ok(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[0..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_pem_bundle(b"hello"), Err(CertError::NoCertificate));
        let bogus = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_pem_bundle(bogus),
            Err(CertError::Der { index: 0, .. })
        ));
    }

    #[test]
    fn utc_time_century() {
        let t = Tlv {
            tag: UTC_TIME,
            content: b"491231235959Z",
            raw: &[],
        };
        assert_eq!(time(&t).unwrap(), "2049-12-31T23:59:59Z");
        let t = Tlv {
            tag: UTC_TIME,
            content: b"500101000000Z",
            raw: &[],
        };
        assert_eq!(time(&t).unwrap(), "1950-01-01T00:00:00Z");
    }

    /// The walker reads the SubjectPublicKeyInfo that rustls' own verifier does (webpki
    /// gives its contents; the pin hashes it with its tag and length).
    #[test]
    fn the_public_key_is_the_one_webpki_reads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pki");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "crt") {
                continue;
            }
            for cert in parse_pem_bundle(&std::fs::read(&path).unwrap()).unwrap() {
                let der = rustls_pki_types::CertificateDer::from(cert.der.clone());
                let anchor = webpki::anchor_from_trusted_cert(&der).unwrap();
                let (spki, rest) = read_tlv(&cert.spki).unwrap();
                assert!(rest.is_empty());
                assert_eq!(
                    spki.content,
                    &anchor.subject_public_key_info[..],
                    "{path:?}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 5, "{checked} certificates");
    }

    #[test]
    fn length_overflow_is_an_error() {
        assert!(read_tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(read_tlv(&[0x30, 0x80]).is_err());
        assert!(read_tlv(&[0x30, 0x05, 0x00]).is_err());
    }
}
