//! kubelet's serving certificate, the one the API server meets when it dials kubelet's
//! port 10250 for logs, exec, port-forward and metrics. By default kubelet makes itself a
//! self-signed one, which the API server accepts unless it runs with
//! `--kubelet-certificate-authority`, and which metrics-server refuses. With
//! `serverTLSBootstrap: true` kubelet asks the cluster instead (a CSR with signer
//! `kubernetes.io/kubelet-serving`), but nothing in Kubernetes approves those: the CSR
//! stays Pending and, until someone approves it, kubelet serves with no certificate at all,
//! so logs and exec fail (kubernetes#73356, kubeadm#591). [`pending`] is pure; [`read`]
//! looks at kubelet's configuration files and its certificate directory.

use serde::Deserialize;

use super::files::{CERT_DIR, CONFIG_DIR, KUBELET_CONFIG};

/// The certificate kubelet rotates to once a serving CSR is issued.
pub const SERVER_CURRENT: &str = "kubelet-server-current.pem";

#[derive(Deserialize, Default)]
struct Fields {
    #[serde(rename = "serverTLSBootstrap", default)]
    server_tls_bootstrap: Option<bool>,
}

/// Whether kubelet's configuration, its files in the order kubelet reads them (config.yaml,
/// then each drop-in: the last one that sets it wins), turns on `serverTLSBootstrap`.
pub fn bootstrap_on(files: &[String]) -> bool {
    files
        .iter()
        .filter_map(|f| serde_saphyr::from_str::<Fields>(f).ok())
        .filter_map(|f| f.server_tls_bootstrap)
        .next_back()
        .unwrap_or(false)
}

/// What is wrong while kubelet waits for its serving certificate, and the fix; `None` when
/// it has one or does not ask for one.
pub fn pending(bootstrap: bool, issued: bool) -> Option<(String, String)> {
    (bootstrap && !issued).then(|| {
        (
            "kubelet has no serving certificate yet: its kubernetes.io/kubelet-serving CSR waits \
             for approval, and until then the API server's logs, exec and port-forward to this \
             node fail"
                .to_string(),
            "approve it on the cluster once its names are this node's (nothing in Kubernetes \
             approves serving CSRs): `kubectl get csr --field-selector \
             spec.signerName=kubernetes.io/kubelet-serving`, then `kubectl certificate approve \
             <name>`; or run an approver that checks them (kubelet-csr-approver)"
                .to_string(),
        )
    })
}

/// This node's kubelet configuration and certificate directory, read.
pub fn read() -> Option<(String, String)> {
    let mut files: Vec<String> = std::fs::read_to_string(KUBELET_CONFIG)
        .into_iter()
        .collect();
    if let Ok(dir) = std::fs::read_dir(CONFIG_DIR) {
        let mut drop_ins: Vec<_> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        drop_ins.sort();
        files.extend(
            drop_ins
                .iter()
                .filter_map(|p| std::fs::read_to_string(p).ok()),
        );
    }
    let issued = std::path::Path::new(CERT_DIR).join(SERVER_CURRENT).exists();
    pending(bootstrap_on(&files), issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_serving_certificate_is_named() {
        let base =
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n".to_string();
        let on = format!("{base}serverTLSBootstrap: true\n");
        let off = format!("{base}serverTLSBootstrap: false\n");
        assert!(!bootstrap_on(std::slice::from_ref(&base)));
        assert!(bootstrap_on(&[base.clone(), on.clone()]));
        // A later drop-in wins; one that does not set it changes nothing.
        assert!(!bootstrap_on(&[on.clone(), off.clone()]));
        assert!(bootstrap_on(&[off, on.clone(), base]));
        assert!(bootstrap_on(&["not: [yaml".into(), on]));

        assert_eq!(pending(false, false), None);
        assert_eq!(pending(true, true), None);
        let (why, fix) = pending(true, false).unwrap();
        assert!(
            why.contains("kubelet-serving CSR waits for approval"),
            "{why}"
        );
        assert!(fix.contains("kubectl certificate approve"), "{fix}");
    }
}
