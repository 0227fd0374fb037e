//! The answer to the first, untrusted fetch, whole: an HTTP body read as the cluster-info
//! ConfigMap, then its signature, kubeconfig, CA and pin checked as discovery does.
#![no_main]

use kubejoin::discovery::{check_first, http::Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let server = "https://192.168.0.10:6443".parse().unwrap();
    let token = "0ve35r.l8o5vx90ot05g17z".parse().unwrap();
    let pins = [real_pin()];
    let resp = Response::with_body(200, body.to_vec());
    let _ = check_first(&server, &resp, &token, &pins);
});

fn real_pin() -> kubejoin::pin::CaPin {
    "sha256:c5a7d6bff8b0f36878bb9a89ecdb489acb3bce12e8944d37f06d88cb8d80564b"
        .parse()
        .unwrap()
}
