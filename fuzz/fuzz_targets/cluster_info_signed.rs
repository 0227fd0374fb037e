//! A cluster-info kubeconfig signed with the token, so that every input gets past the
//! signature to the YAML, base64, PEM, X.509 and pin checks behind it.
#![no_main]

use kubejoin::discovery::{check_first, http::Response};
use libfuzzer_sys::fuzz_target;

const TOKEN_ID: &str = "0ve35r";
const TOKEN_SECRET: &str = "l8o5vx90ot05g17z";

fuzz_target!(|kubeconfig: &str| {
    let server = "https://192.168.0.10:6443".parse().unwrap();
    let token = format!("{TOKEN_ID}.{TOKEN_SECRET}").parse().unwrap();
    let pins = [
        "sha256:c5a7d6bff8b0f36878bb9a89ecdb489acb3bce12e8944d37f06d88cb8d80564b"
            .parse()
            .unwrap(),
    ];
    let jws =
        kubejoin::jws::sign_detached(kubeconfig.as_bytes(), TOKEN_ID, TOKEN_SECRET.as_bytes());
    let body = serde_json::json!({
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": kubeconfig, format!("jws-kubeconfig-{TOKEN_ID}"): jws},
    });
    let resp = Response::with_body(200, serde_json::to_vec(&body).unwrap());
    let _ = check_first(&server, &resp, &token, &pins);
});
