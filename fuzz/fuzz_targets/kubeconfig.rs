//! The kubeconfig inside cluster-info: YAML, the cluster kubeadm picks, its server and CA.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|yaml: &str| {
    let _ = kubejoin::kubeconfig::parse_cluster_info(yaml);
});
