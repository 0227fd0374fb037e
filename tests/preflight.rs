//! `kubejoin preflight`, and the preflight at the start of `kubejoin run`, in testbeds:
//! each failure named with its fix, and nothing changed when it stops a run.

mod support;

use support::text;

use apiserver_double::ApiServer;
use support::node::{api, node};
use support::testbed;

#[test]
fn a_missing_kubelet_binary_stops_the_run_before_any_change() {
    if !testbed::available() {
        return;
    }
    // Swaps are global: keep the swap test's from showing up here.
    let _swap = testbed::lock_swap().unwrap();
    let tb = node(false, "")
        .with_file(
            "/etc/kubejoin/config.d/10-binary.toml",
            "[kubelet]\nbinary = \"/usr/local/bin/no-kubelet\"\n",
            0o644,
        )
        .boot()
        .unwrap();
    let out = tb.exec(&["kubejoin", "preflight"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report = text(&out);
    assert!(report.contains("[  ERROR] KubeletBinary "), "{report}");
    assert!(
        report.contains("/usr/local/bin/no-kubelet does not exist"),
        "{report}"
    );
    assert!(report.contains("fix: install kubelet there"), "{report}");
    assert!(report.contains("[     ok] Root"), "{report}");

    let _api = api(&tb, ApiServer::builder());
    let out = tb.exec(&["kubejoin", "run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("preflight failed: KubeletBinary"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("--ignore-preflight-errors=KubeletBinary"),
        "{}",
        text(&out)
    );
    assert!(
        tb.read("/var/lib/kubelet/bootstrap-kubeconfig").is_err(),
        "nothing written"
    );
    assert!(tb.read("/etc/systemd/system/kubelet.service").is_err());
}

#[test]
fn port_10250_in_use_is_an_error_unless_ignored() {
    if !testbed::available() {
        return;
    }
    let _swap = testbed::lock_swap().unwrap();
    let tb = node(false, "").boot().unwrap();
    let _api = api(&tb, ApiServer::builder());
    // Something else holds kubelet's port in the testbed.
    let _taken = tb.bind_tcp("0.0.0.0:10250").unwrap();
    let out = tb.exec(&["kubejoin", "run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("Port-10250: port 10250 is in use"),
        "{}",
        text(&out)
    );

    tb.exec_ok(&["kubejoin", "run", "--ignore-preflight-errors=Port-10250"]);
    assert_eq!(tb.unit_state("kubelet.service"), "active running");
}

#[test]
fn an_active_swap_is_named() {
    if !testbed::available() {
        return;
    }
    let tb = node(false, "").with_swap(16 << 20).boot().unwrap();
    let device = tb.swap_device().unwrap().to_string();
    let out = tb.exec(&["kubejoin", "preflight", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let swap = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Swap")
        .unwrap();
    assert_eq!(swap["ok"], false);
    assert_eq!(swap["severity"], "error");
    assert!(
        swap["message"].as_str().unwrap().contains(&device),
        "{swap}"
    );
    assert!(swap["fix"].as_str().unwrap().contains("swapoff"), "{swap}");
}

#[test]
fn a_clock_far_off_is_named_before_the_tls_error() {
    if !testbed::available() {
        return;
    }
    let _swap = testbed::lock_swap().unwrap();
    let future_pin =
        std::fs::read_to_string(apiserver_double::fixtures_dir().join("pki/future-ca-hash.txt"))
            .unwrap();
    let tb = node(false, "")
        .with_file(
            "/etc/kubejoin/config.d/30-pin.toml",
            format!("[cluster]\nca_cert_hashes = [\"{}\"]\n", future_pin.trim()),
            0o644,
        )
        .boot()
        .unwrap();
    // The cluster's clock says 2099: its Date header and its CA's validity both do.
    let _api = api(
        &tb,
        ApiServer::builder()
            .pki(apiserver_double::Pki::future())
            .date_offset(2_500_000_000),
    );
    let out = tb.exec(&["kubejoin", "run"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(3), "{msg}");
    // First the clock, then the TLS failure it explains.
    let clock = msg
        .find("s behind the API server's (its Date header)")
        .expect(&msg);
    let ca = msg
        .find("the cluster CA is valid only from 2099-01-01T00:00:00Z, after this host's clock")
        .expect(&msg);
    let tls = msg
        .find("is not valid yet (check this host's clock)")
        .expect(&msg);
    assert!(clock < tls && ca < tls, "{msg}");
    assert!(
        tb.read("/var/lib/kubelet/bootstrap-kubeconfig").is_err(),
        "nothing written"
    );
}
