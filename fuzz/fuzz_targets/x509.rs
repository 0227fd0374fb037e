//! The cluster CA from cluster-info: a PEM bundle, and each certificate's DER.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kubejoin::x509::parse_der(data);
    let _ = kubejoin::x509::parse_pem_bundle(data);
});
