//! A detached JWS from cluster-info, checked against a token: any input, no panic, and
//! nothing but the one right signature verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

const CONTENT: &[u8] = b"apiVersion: v1\nclusters: []\n";

fuzz_target!(|jws: &str| {
    let right = kubejoin::jws::sign_detached(CONTENT, "abcdef", b"0123456789abcdef");
    let verified = kubejoin::jws::verify_detached(jws, CONTENT, "abcdef", b"0123456789abcdef");
    if verified.is_ok() {
        assert_eq!(jws, right, "a JWS other than the signer's verified");
    }
});
