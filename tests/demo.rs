//! The quick-start demo's second half (`demo/run.sh`): a whole join in a testbed, shown
//! the way an operator would look at a node. Ignored by `cargo test`; the demo runs it
//! with `cargo test --test demo -- --ignored --nocapture`.

mod support;

use apiserver_double::ApiServer;
use support::node::{api, node, with_unit};
use support::testbed;

fn show(tb: &testbed::Testbed, title: &str, argv: &[&str]) {
    let out = tb.exec(argv);
    println!("\n== {title}: {}", argv.join(" "));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    print!("{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[ignore = "the demo; run by demo/run.sh"]
fn join_a_worker_in_a_testbed() {
    if !testbed::available() {
        return;
    }
    println!("booting a testbed: this machine under the real systemd, in namespaces...");
    let tb = with_unit(node(
        false,
        "node_labels = { \"node.kubernetes.io/pool\" = \"demo\" }\n",
    ))
    .boot()
    .expect("testbed boots");
    println!(
        "booted in {:.1?}; serving cluster-info on the testbed's 127.0.0.1:6443, signer 1 s late",
        tb.boot_time
    );
    let _api = api(
        &tb,
        ApiServer::builder().sign_after(std::time::Duration::from_secs(1)),
    );

    show(
        &tb,
        "what a run would do",
        &["kubejoin", "run", "--dry-run"],
    );
    show(
        &tb,
        "systemd starts kubejoin.service (returns once kubelet is up)",
        &["systemctl", "start", "kubejoin.service"],
    );
    show(
        &tb,
        "the join's story",
        &[
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "kubejoin.service",
        ],
    );
    show(
        &tb,
        "the units",
        &[
            "systemctl",
            "status",
            "--no-pager",
            "--lines=0",
            "kubejoin.service",
            "kubelet.service",
        ],
    );
    show(
        &tb,
        "kubelet's bootstrap kubeconfig",
        &[
            "stat",
            "-c",
            "%A %n",
            "/var/lib/kubelet/bootstrap-kubeconfig",
        ],
    );
    show(&tb, "kubejoin status", &["kubejoin", "status"]);
    show(&tb, "a second run", &["kubejoin", "run"]);
    assert_eq!(tb.unit_state("kubejoin.service"), "active exited");
    assert_eq!(tb.unit_state("kubelet.service"), "active running");
}
