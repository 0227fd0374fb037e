//! `kubejoin run` and `kubejoin.service` in testbeds: real systemd, D-Bus and journald,
//! the API server double on the testbed's loopback, the kubelet stand-in as kubelet.

mod support;

use support::text;

use std::time::{Duration, Instant};

use apiserver_double::{ApiServer, REAL_TOKEN_ID, REAL_TOKEN_SECRET};
use support::node::{api, node, with_unit};
use support::testbed::{self, Testbed, wait_for};

fn show(tb: &Testbed, unit: &str, property: &str) -> String {
    text(&tb.exec(&["systemctl", "show", "--value", "-p", property, unit]))
        .trim()
        .to_string()
}

const KUBELET_FILES: [&str; 4] = [
    "/var/lib/kubelet/bootstrap-kubeconfig",
    "/etc/kubernetes/pki/ca.crt",
    "/var/lib/kubelet/config.yaml",
    "/etc/systemd/system/kubelet.service",
];

fn mtimes(tb: &Testbed) -> String {
    let mut argv = vec!["stat", "-c", "%n %y %a"];
    argv.extend(KUBELET_FILES);
    text(&tb.exec(&argv))
}

fn reloads(tb: &Testbed) -> usize {
    text(&tb.exec(&["journalctl", "--no-pager", "-o", "cat", "_PID=1"]))
        .matches("Reloading")
        .count()
}

#[test]
fn run_starts_kubelet_and_a_second_run_changes_nothing() {
    if !testbed::available() {
        return;
    }
    let tb = node(true, "node_labels = { zone = \"a\" }\n")
        .boot()
        .unwrap();
    let _api = api(&tb, ApiServer::builder());

    let out = tb.exec_ok(&["kubejoin", "run"]);
    let report = text(&out);
    assert!(report.contains("outcome:       joined"), "{report}");
    support::assert_readable("the join's report and log", &report);
    // It ends when the node is in: healthy, its certificate issued, its Node readable.
    for line in [
        "node:          testbed-",
        "healthz:       ok at 20",
        "certificate:   /var/lib/kubelet/kubelet-client-current.pem at 20",
        "registered:    at 20",
        "ready:         NotReady: no network plugin yet (expected until one is installed)",
        "fix: install a network plugin on the cluster",
        "is registered (NotReady: no network plugin yet, expected until one is installed) and kubelet.service is active",
    ] {
        assert!(report.contains(line), "{line:?} not in:\n{report}");
    }
    assert!(!report.contains(REAL_TOKEN_SECRET), "{report}");

    assert_eq!(tb.unit_state("kubelet.service"), "active running");
    assert_eq!(show(&tb, "kubelet.service", "UnitFileState"), "enabled");
    let inv = wait_for(Duration::from_secs(10), || tb.kubelet_invocation()).unwrap();
    assert_eq!(
        inv["argv"],
        serde_json::json!([
            "/usr/local/bin/kubelet",
            "--bootstrap-kubeconfig=/var/lib/kubelet/bootstrap-kubeconfig",
            "--cert-dir=/var/lib/kubelet/",
            "--kubeconfig=/var/lib/kubelet/kubeconfig",
            "--config=/var/lib/kubelet/config.yaml",
            "--container-runtime=remote",
            "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
            "--runtime-cgroups=/systemd/system.slice",
            "--node-labels=zone=a",
        ])
    );
    assert_eq!(inv["bootstrap"]["token_id"], REAL_TOKEN_ID);
    // The token was in the 0600 kubeconfig only (the dry run's test checks its mode): not
    // in the unit, argv or environment. The node in, the kubeconfig and the token's file
    // are gone: kubelet has its own credentials.
    assert!(!inv.to_string().contains(REAL_TOKEN_SECRET));
    assert!(
        report.contains("credentials:   removed /var/lib/kubelet/bootstrap-kubeconfig, /etc/kubejoin/token (kubelet has its own)"),
        "{report}"
    );
    // The double's token may not read its Secret: not single-use, left to its TTL, said.
    assert!(
        report.contains(&format!("; bootstrap token {REAL_TOKEN_ID} stays valid on the cluster until it expires (its expiration is not readable with the token): it is not single-use")),
        "{report}"
    );
    for gone in [
        "/var/lib/kubelet/bootstrap-kubeconfig",
        "/etc/kubejoin/token",
    ] {
        assert!(tb.read(gone).is_err(), "{gone} is still there");
    }
    let unit = String::from_utf8(tb.read("/etc/systemd/system/kubelet.service").unwrap()).unwrap();
    assert!(unit.contains("Requires=containerd.service"), "{unit}");
    assert!(!unit.contains(REAL_TOKEN_SECRET));
    let config = String::from_utf8(tb.read("/var/lib/kubelet/config.yaml").unwrap()).unwrap();
    assert!(config.contains("kind: KubeletConfiguration"), "{config}");
    assert_eq!(
        tb.read("/etc/kubernetes/pki/ca.crt").unwrap(),
        std::fs::read(apiserver_double::fixtures_dir().join("real-apiserver/ca.crt")).unwrap()
    );
    let status = text(&tb.exec(&["kubejoin", "status"]));
    assert!(status.contains("last run:      joined"), "{status}");
    assert!(
        status.contains("kubelet:       active (running)"),
        "{status}"
    );
    assert!(status.contains("registered:    at 20"), "{status}");
    assert!(
        status.contains("credentials:   removed /var/lib/kubelet/bootstrap-kubeconfig"),
        "{status}"
    );

    // Again: nothing rewritten, no reload, kubelet not restarted.
    let (files, reload_count) = (mtimes(&tb), reloads(&tb));
    let entered = show(&tb, "kubelet.service", "ActiveEnterTimestampMonotonic");
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       already-joined"),
        "{}",
        text(&out)
    );
    assert_eq!(mtimes(&tb), files);
    assert_eq!(reloads(&tb), reload_count);
    assert_eq!(
        show(&tb, "kubelet.service", "ActiveEnterTimestampMonotonic"),
        entered
    );
    assert_eq!(tb.kubelet_starts(), 1);
}

#[test]
fn dry_run_shows_the_plan_and_changes_nothing() {
    if !testbed::available() {
        return;
    }
    let tb = node(false, "").boot().unwrap();
    let _api = api(&tb, ApiServer::builder());
    let before = tb.changed_files_except_logs();
    let out = tb.exec_ok(&["kubejoin", "run", "--dry-run"]);
    let plan = text(&out);
    for line in [
        "outcome:       dry-run",
        "file:          would create /var/lib/kubelet/bootstrap-kubeconfig (0600, bootstrap kubeconfig (holds the token; never shown))",
        "file:          would create /etc/systemd/system/kubelet.service (0644",
        "+ ExecStart=/usr/local/bin/kubelet \\",
        "systemd:       would Reload (/etc/systemd/system/kubelet.service changed)",
        "systemd:       would EnableUnitFiles kubelet.service",
        "systemd:       would StartUnit kubelet.service replace",
        "dir:           would create /etc/kubernetes/manifests (0755)",
    ] {
        assert!(plan.contains(line), "{line:?} not in:\n{plan}");
    }
    assert!(!plan.contains(REAL_TOKEN_SECRET));
    assert_eq!(tb.changed_files_except_logs(), before);
    assert_eq!(tb.unit_state("kubelet.service"), "inactive dead");

    let json = tb.exec(&["kubejoin", "run", "--dry-run", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["plan"]["systemd"][2]["call"], "start");
    assert_eq!(v["plan"]["files"][0]["action"], "create");
}

#[test]
fn a_kubelet_that_exits_at_once_fails_the_run_with_its_result() {
    if !testbed::available() {
        return;
    }
    let tb = node(false, "")
        .with_file("/etc/kubelet-standin/exit-code", "1\n", 0o644)
        .boot()
        .unwrap();
    let _api = api(&tb, ApiServer::builder());
    let started = Instant::now();
    let out = tb.exec(&["kubejoin", "run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    // Its own last line quoted, as kubelet's fatal line would be.
    assert!(msg.contains("kubelet exited ("), "{msg}");
    assert!(msg.contains("exit status 1"), "{msg}");
    assert!(
        msg.contains("kubelet-standin: exiting with 1 as told"),
        "{msg}"
    );
    assert!(msg.contains("journalctl -u kubelet.service"), "{msg}");
    assert!(!msg.contains("joined"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_service_retries_until_the_api_server_is_up_and_reports_its_status() {
    if !testbed::available() {
        return;
    }
    let tb = with_unit(node(false, "").with_file(
        "/etc/kubejoin/config.d/10-fast.toml",
        "[cluster]\ndiscovery_timeout = \"2s\"\n",
        0o644,
    ))
    .boot()
    .unwrap();
    // Nothing listens on the testbed's 127.0.0.1:6443 yet: exit 1, restarted.
    tb.exec_ok(&["systemctl", "start", "--no-block", "kubejoin.service"]);
    let restarted = wait_for(Duration::from_secs(30), || {
        (show(&tb, "kubejoin.service", "NRestarts")
            .parse::<u32>()
            .unwrap_or(0)
            >= 1)
            .then_some(())
    });
    assert!(restarted.is_some(), "{}", tb.journal("kubejoin.service"));
    assert!(tb.journal("kubejoin.service").contains("status=1/FAILURE"));

    // The API server comes up, its signer a few seconds late: STATUS= says what it waits for.
    let _api = api(&tb, ApiServer::builder().sign_after(Duration::from_secs(4)));
    let seen = wait_for(Duration::from_secs(20), || {
        let s = text(&tb.exec(&["systemctl", "status", "--no-pager", "kubejoin.service"]));
        s.contains("Status: \"discovering the cluster at https://127.0.0.1:6443\"")
            .then_some(s)
    });
    assert!(seen.is_some(), "{}", tb.journal("kubejoin.service"));
    let done = wait_for(Duration::from_secs(60), || {
        (tb.unit_state("kubejoin.service") == "active exited").then_some(())
    });
    assert!(
        done.is_some(),
        "{}\n{}",
        tb.unit_state("kubejoin.service"),
        tb.journal("kubejoin.service")
    );
    assert_eq!(tb.unit_state("kubelet.service"), "active running");
    let status = show(&tb, "kubejoin.service", "StatusText");
    assert!(
        status.starts_with("joined: node testbed-") && status.contains("is registered"),
        "{status}"
    );
    let journal = tb.journal("kubejoin.service");
    assert!(journal.contains("PHASE=discovery"), "{journal}");
    assert!(!journal.contains(REAL_TOKEN_SECRET));
}

#[test]
fn a_trust_failure_stops_the_service_without_restarts() {
    if !testbed::available() {
        return;
    }
    let tb = with_unit(node(false, "")).boot().unwrap();
    let _api = api(&tb, ApiServer::builder().forge_signatures());
    let out = tb.exec(&["systemctl", "start", "kubejoin.service"]);
    assert!(!out.status.success(), "the start job fails");
    let failed = wait_for(Duration::from_secs(20), || {
        tb.unit_state("kubejoin.service")
            .starts_with("failed")
            .then_some(())
    });
    assert!(failed.is_some(), "{}", tb.unit_state("kubejoin.service"));
    std::thread::sleep(Duration::from_secs(2)); // longer than RestartSec
    assert_eq!(show(&tb, "kubejoin.service", "NRestarts"), "0");
    assert_eq!(show(&tb, "kubejoin.service", "ExecMainStatus"), "3");
    assert!(tb.journal("kubejoin.service").contains("trust failure"));
    assert_eq!(tb.unit_state("kubelet.service"), "inactive dead");
}

#[test]
fn a_kubelet_that_never_bootstraps_fails_the_join_at_its_timeout() {
    if !testbed::available() {
        return;
    }
    let tb = node(false, "")
        .with_file(
            "/etc/kubejoin/config.d/10-short.toml",
            "[kubelet]\njoin_timeout = \"3s\"\n",
            0o644,
        )
        .with_file("/etc/kubelet-standin/no-tls-bootstrap", "", 0o644)
        .boot()
        .unwrap();
    let _api = api(&tb, ApiServer::builder());
    let out = tb.exec(&["kubejoin", "run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("the node did not join within the join timeout: kubelet's health endpoint never answered ok"),
        "{msg}"
    );
    assert!(msg.contains("system:bootstrappers"), "{msg}");
    assert!(!msg.contains("outcome:       joined"), "{msg}");
}

#[test]
fn leaves_a_joined_node_alone() {
    if !testbed::available() {
        return;
    }
    let tb = node(false, "").boot().unwrap();
    let api = api(&tb, ApiServer::builder());
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(text(&out).contains("registered:"), "{}", text(&out));
    drop(api);

    // Joined: kubelet is active with its client certificate. Even with the API server
    // gone and the token gone (the join removed its file), a run changes nothing and says
    // so: the cluster's part of kubelet's configuration is the one recorded at the join.
    assert!(tb.read("/etc/kubejoin/token").is_err());
    let entered = show(&tb, "kubelet.service", "ActiveEnterTimestampMonotonic");
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       already-joined"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("cannot be read now (cannot connect to https://127.0.0.1:6443"),
        "{}",
        text(&out)
    );
    assert_eq!(
        show(&tb, "kubelet.service", "ActiveEnterTimestampMonotonic"),
        entered
    );
}

#[test]
fn enabled_at_boot_after_cloud_init_without_an_ordering_cycle() {
    if !testbed::available() {
        return;
    }
    // cloud-init writes part of the configuration, as user-data does on a real worker.
    let user_data = "#cloud-config\nwrite_files:\n- path: /etc/kubejoin/config.d/50-cloud-init.toml\n  permissions: '0600'\n  content: |\n    [kubelet]\n    node_labels = { pool = \"cloud-init\" }\n";
    let mut tb = with_unit(node(false, ""))
        .with_symlink(
            "/etc/systemd/system/multi-user.target.wants/kubejoin.service",
            "/etc/systemd/system/kubejoin.service",
        )
        .with_cloud_init(user_data)
        .boot_no_wait()
        .unwrap();
    let _api = api(&tb, ApiServer::builder());
    // Boot ends when kubejoin.service is ready: multi-user.target is ordered after it.
    tb.wait_booted(Duration::from_secs(90)).unwrap();
    assert_eq!(tb.unit_state("kubejoin.service"), "active exited");
    assert_eq!(tb.unit_state("kubelet.service"), "active running");
    let pid1 = text(&tb.exec(&["journalctl", "--no-pager", "-o", "cat", "_PID=1"]));
    assert!(!pid1.contains("ordering cycle"), "{pid1}");
    let inv = wait_for(Duration::from_secs(10), || tb.kubelet_invocation()).unwrap();
    assert_eq!(inv["argv"][8], "--node-labels=pool=cloud-init");
}

#[test]
fn settings_that_cannot_work_with_this_kubelet_are_refused() {
    if !testbed::available() {
        return;
    }
    // kubelet 1.22 with docker uses its dockershim: a CRI endpoint cannot be honoured.
    let tb = node(false, "")
        .with_file("/etc/kubelet-standin/version", "v1.22.17\n", 0o644)
        .with_file(
            "/etc/kubejoin/config.d/10-docker.toml",
            "[host]\ncontainer_runtime = \"docker\"\n\n[kubelet]\ncontainer_runtime_endpoint = \"unix:///run/containerd/containerd.sock\"\n",
            0o644,
        )
        .boot()
        .unwrap();
    let out = tb.exec(&["kubejoin", "run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    // The file that set it, the key, why, and the fix.
    assert!(
        msg.contains("/etc/kubejoin/config.d/10-docker.toml: kubelet.container_runtime_endpoint"),
        "{msg}"
    );
    assert!(msg.contains("dockershim"), "{msg}");
    assert!(
        msg.contains("remove [kubelet] container_runtime_endpoint"),
        "{msg}"
    );
    assert_eq!(tb.unit_state("kubelet.service"), "inactive dead");

    // A kubelet newer than the API server (the double is v1.20.2): refused by the skew
    // policy after discovery, before anything of kubelet's is written.
    tb.exec_ok(&["rm", "/etc/kubejoin/config.d/10-docker.toml"]);
    tb.write("/etc/kubelet-standin/version", "v1.36.2\n", 0o644);
    let _api = api(&tb, ApiServer::builder());
    let out = tb.exec(&["kubejoin", "run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("kubelet v1.36.2 is newer than the API server v1.20.2"),
        "{msg}"
    );
    assert!(
        msg.contains("--ignore-preflight-errors=KubeletVersionSkew"),
        "{msg}"
    );
    assert!(tb.read("/var/lib/kubelet/bootstrap-kubeconfig").is_err());
}

#[test]
fn one_run_at_a_time() {
    if !testbed::available() {
        return;
    }
    // The first run holds the lock while it waits for a kubelet that never bootstraps.
    let tb = node(false, "")
        .with_file(
            "/etc/kubejoin/config.d/10-slow.toml",
            "[kubelet]\njoin_timeout = \"8s\"\n",
            0o644,
        )
        .with_file("/etc/kubelet-standin/no-tls-bootstrap", "", 0o644)
        .boot()
        .unwrap();
    let _api = api(&tb, ApiServer::builder());
    // Its output is kept for the test's own (a failure shows it), not cargo test's.
    let first = tb
        .command(&["kubejoin", "run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let held = wait_for(Duration::from_secs(10), || {
        tb.read("/run/kubejoin/lock")
            .ok()
            .filter(|l| String::from_utf8_lossy(l).contains("kubejoin run"))
    });
    assert!(held.is_some(), "the first run took the lock");
    let out = tb.exec(&["kubejoin", "run", "--lock-timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    let holder = String::from_utf8(held.unwrap()).unwrap();
    let pid = holder.lines().next().unwrap();
    assert!(
        msg.contains(&format!(
            "another kubejoin holds /run/kubejoin/lock: PID {pid} (kubejoin run)"
        )),
        "{msg}"
    );
    assert!(msg.contains("gave up after 1s"), "{msg}");
    // status never waits.
    let started = Instant::now();
    tb.exec_ok(&["kubejoin", "status"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    // Released with the first run: the next one takes it at once.
    let out = tb.exec(&["kubejoin", "plan", "--lock-timeout", "0s"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// This machine's systemd-resolved package (scripts/install-deps.sh downloads it), or why
/// there is none.
fn systemd_resolved_deb() -> Result<std::path::PathBuf, String> {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "systemd"])
        .output()
        .map_err(|e| format!("dpkg-query: {e}"))?;
    let version = String::from_utf8_lossy(&out.stdout).replace(':', "%3a");
    let dir = std::env::var("KUBEJOIN_DEB_CACHE").unwrap_or("/var/cache/kubejoin-debs".into());
    let path = std::path::Path::new(&dir).join(format!("systemd-resolved_{version}_amd64.deb"));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is absent (scripts/install-deps.sh downloads it when the archive has this systemd's version)",
            path.display()
        ))
    }
}

/// systemd-resolved runs on the node (installed in the testbed, a real one on real
/// systemd and D-Bus): kubelet's resolvConf is its upstream list, not its stub at
/// 127.0.0.53, which pods cannot reach.
#[test]
fn under_systemd_resolved_kubelet_gets_its_upstream_servers() {
    if !testbed::available() {
        return;
    }
    let deb = match systemd_resolved_deb() {
        Ok(deb) => deb,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let tb = node(false, "")
        .with_file(
            "/root/systemd-resolved.deb",
            std::fs::read(&deb).unwrap(),
            0o644,
        )
        .boot()
        .unwrap();
    let _api = api(&tb, ApiServer::builder());
    let out = tb.exec(&["dpkg", "-i", "/root/systemd-resolved.deb"]);
    assert!(out.status.success(), "{}", text(&out));
    tb.exec_ok(&["systemctl", "start", "systemd-resolved.service"]);
    assert_eq!(tb.unit_state("systemd-resolved.service"), "active running");

    let plan = text(&tb.exec_ok(&["kubejoin", "run", "--dry-run"]));
    assert!(
        plan.contains(
            "resolvConf: \"/run/systemd/resolve/resolv.conf\" (this node: systemd-resolved runs here"
        ),
        "{plan}"
    );
    tb.exec_ok(&["kubejoin", "run"]);
    let config = String::from_utf8(tb.read("/var/lib/kubelet/config.yaml").unwrap()).unwrap();
    assert!(
        config.contains("\nresolvConf: /run/systemd/resolve/resolv.conf\n"),
        "{config}"
    );
}

/// Once the node is in, the bootstrap credentials go (the bootstrap kubeconfig and the
/// token's file), and the node needs no token any more: doctor says so, a stopped kubelet
/// is started with its own credentials, reset still undoes the join. `keep_token` keeps
/// them. A join that fails for good removes a bootstrap kubeconfig it finds.
#[test]
fn the_bootstrap_credentials_go_once_the_node_is_in() {
    if !testbed::available() {
        return;
    }
    let tb = node(false, "").boot().unwrap();
    // A Role that lets only tokens read the cluster's kubelet configuration: a joined
    // node falls back on what its join recorded.
    let double = api(&tb, ApiServer::builder().kubelet_config_for_tokens_only());
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       joined"),
        "{}",
        text(&out)
    );
    for gone in [
        "/var/lib/kubelet/bootstrap-kubeconfig",
        "/etc/kubejoin/token",
    ] {
        assert!(tb.read(gone).is_err(), "{gone} is still there");
    }

    // No token on a joined node: fine, and doctor says why.
    let doctor = text(&tb.exec(&["kubejoin", "doctor"]));
    assert!(
        doctor.contains(
            "none on this node, which has joined: kubelet has its own client certificate"
        ),
        "{doctor}"
    );
    // kubelet stopped: started again with its own credentials, no discovery.
    let fetched = double.requests().len();
    tb.exec_ok(&["systemctl", "stop", "kubelet.service"]);
    let out = tb.exec(&["kubejoin", "run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("outcome:       started"),
        "{}",
        text(&out)
    );
    assert_eq!(tb.unit_state("kubelet.service"), "active running");
    // As the node, no token: the API server's version, the cluster's kubelet configuration
    // (under kubeadm v1.20's name) and the Node.
    let asked: Vec<String> = double.requests()[fetched..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        asked,
        [
            "/version".to_string(),
            "/api/v1/namespaces/kube-system/configmaps/kubelet-config".into(),
            "/api/v1/namespaces/kube-system/configmaps/kubelet-config-1.20".into(),
            format!("/api/v1/nodes/{}", tb.exec_text(&["hostname"]).trim()),
        ],
        "read as the node"
    );
    assert!(
        double.requests()[fetched..]
            .iter()
            .all(|r| r.authorization.is_none()),
        "no token sent"
    );
    // The same with no record of the join and the cluster's kubelet configuration not
    // readable as the node: kubelet's files are left as they are, kubelet started.
    tb.exec_ok(&["rm", "/var/lib/kubejoin/state.json"]);
    tb.exec_ok(&["systemctl", "stop", "kubelet.service"]);
    let out = tb.exec(&["kubejoin", "run"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("outcome:       started"), "{said}");
    assert!(said.contains("no run recorded it"), "{said}");
    assert_eq!(tb.unit_state("kubelet.service"), "active running");
    // A joined node is left alone, with no token; reset undoes the join.
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       already-joined"),
        "{}",
        text(&out)
    );
    let out = tb.exec(&["kubejoin", "reset"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tb.unit_state("kubelet.service"), "inactive dead");

    // keep_token: both stay, and the report says so.
    let tb = node(false, "")
        .with_file(
            "/etc/kubejoin/config.d/50-keep.toml",
            "[cluster]\nkeep_token = true\n",
            0o600,
        )
        .boot()
        .unwrap();
    let _api = api(&tb, ApiServer::builder());
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains(
            "credentials:   kept /var/lib/kubelet/bootstrap-kubeconfig (keep_token = true); /etc/kubejoin/token (keep_token = true)"
        ),
        "{}",
        text(&out)
    );
    assert!(tb.read("/var/lib/kubelet/bootstrap-kubeconfig").is_ok());
    assert!(tb.read("/etc/kubejoin/token").is_ok());

    // A join that fails for good (a trust failure) leaves no bootstrap kubeconfig behind.
    let tb = node(false, "").boot().unwrap();
    let _api = api(&tb, ApiServer::builder().forge_signatures());
    tb.write(
        "/var/lib/kubelet/bootstrap-kubeconfig",
        "left by an earlier run\n",
        0o600,
    );
    let out = tb.exec(&["kubejoin", "run"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(tb.read("/var/lib/kubelet/bootstrap-kubeconfig").is_err());
}

/// A client certificate kubelet cannot use is not a join: another node's (as a disk cloned
/// from it brings) or an expired one (a node off longer than its certificate's life).
/// Without a token the run stops as needing a person, naming why; with one, kubelet
/// bootstraps anew for this node.
#[test]
fn a_certificate_kubelet_cannot_use_is_bootstrapped_anew() {
    if !testbed::available() {
        return;
    }
    let tb = node(false, "").boot().unwrap();
    let _api = api(&tb, ApiServer::builder());
    tb.exec_ok(&["kubejoin", "run"]);
    let hostname = text(&tb.exec_ok(&["hostname"])).trim().to_lowercase();
    let token = format!("{REAL_TOKEN_ID}.{REAL_TOKEN_SECRET}\n");
    // Certificates from the cluster CA (the stand-in's signer key), with `openssl ca` for
    // validity dates in the past.
    let setup = tb.sh(
        "set -e; mkdir -p /root/ca/new; cd /root/ca; : > index.txt; echo 1000 > serial
         cp /etc/kubernetes/pki/ca.crt ca.crt
         printf '%s\\n' '[ca]' 'default_ca = d' '[d]' 'dir = /root/ca' 'database = /root/ca/index.txt' \
           'new_certs_dir = /root/ca/new' 'serial = /root/ca/serial' 'default_md = sha256' 'policy = p' \
           'x509_extensions = e' 'unique_subject = no' '[p]' 'organizationName = supplied' 'commonName = supplied' \
           '[e]' 'extendedKeyUsage = clientAuth' 'keyUsage = critical,digitalSignature,keyEncipherment' > cnf",
    );
    assert!(setup.status.success(), "{}", text(&setup));
    let issue = |cn: &str, dates: &str| {
        let out = tb.sh(&format!(
            "set -e; cd /root/ca
             openssl ecparam -name prime256v1 -genkey -noout -out k.pem
             openssl req -new -key k.pem -subj '/O=system:nodes/CN=system:node:{cn}' -out r.csr
             openssl ca -batch -notext -config cnf -cert ca.crt -keyfile /etc/kubelet-standin/ca.key {dates} -in r.csr -out c.pem 2>/dev/null
             cat c.pem k.pem > /var/lib/kubelet/kubelet-client-current.pem"
        ));
        assert!(out.status.success(), "{}", text(&out));
    };
    for (cn, dates, why) in [
        (
            "another-node",
            "-days 30",
            "is for node another-node, and this node is",
        ),
        (
            hostname.as_str(),
            "-startdate 20200101000000Z -enddate 20200102000000Z",
            "not a client certificate of the cluster CA",
        ),
    ] {
        issue(cn, dates);
        let out = tb.exec(&["kubejoin", "run"]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        for needle in [
            "kubelet's client certificate cannot be used",
            why,
            "has no bootstrap token to join again",
            "give this node a new bootstrap token",
        ] {
            assert!(said.contains(needle), "{needle:?} not in:\n{said}");
        }
        // With a token, kubelet bootstraps anew: a certificate for this node, the token gone again.
        tb.write("/etc/kubejoin/token", &token, 0o600);
        let starts = tb.kubelet_starts();
        let out = tb.exec(&["kubejoin", "run"]);
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("outcome:       joined"), "{said}");
        assert!(said.contains("to bootstrap again: "), "{said}");
        assert_eq!(tb.kubelet_starts(), starts + 1);
        let subject = text(&tb.exec_ok(&[
            "openssl",
            "x509",
            "-noout",
            "-subject",
            "-in",
            "/var/lib/kubelet/kubelet-client-current.pem",
        ]));
        assert!(
            subject.contains(&format!("system:node:{hostname}")),
            "{subject}"
        );
        assert!(tb.read("/etc/kubejoin/token").is_err());
    }
}

/// A joined node follows its configuration: a changed key re-renders kubelet's files and
/// restarts kubelet, without a token (the join removed it); no change changes nothing;
/// `--dry-run` shows the plan first.
#[test]
fn a_changed_configuration_is_applied_to_a_joined_node() {
    if !testbed::available() {
        return;
    }
    let tb = node(false, "").boot().unwrap();
    let _double = api(&tb, ApiServer::builder());
    tb.exec_ok(&["kubejoin", "run"]);
    assert!(tb.read("/etc/kubejoin/token").is_err());
    tb.write(
        "/etc/kubejoin/config.d/60-fleet.toml",
        "[kubelet.config]\nmaxPods = 42\n",
        0o644,
    );
    let before = tb.read("/var/lib/kubelet/config.yaml").unwrap();
    let out = tb.exec_ok(&["kubejoin", "run", "--dry-run"]);
    let plan = text(&out);
    for line in [
        "outcome:       dry-run",
        "file:          would update /var/lib/kubelet/config.yaml",
        "+ maxPods: 42",
        "file:          unchanged /etc/systemd/system/kubelet.service",
        "systemd:       would RestartUnit kubelet.service replace (/var/lib/kubelet/config.yaml changed)",
    ] {
        assert!(plan.contains(line), "{line:?} not in:\n{plan}");
    }
    assert!(!plan.contains("bootstrap-kubeconfig"), "{plan}");
    let starts = tb.kubelet_starts();
    let out = tb.exec(&["kubejoin", "run"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for line in [
        "outcome:       reconciled",
        "file:          update /var/lib/kubelet/config.yaml",
        "registered:    at 20",
    ] {
        assert!(said.contains(line), "{line:?} not in:\n{said}");
    }
    assert_eq!(tb.kubelet_starts(), starts + 1, "kubelet restarted once");
    // The stand-in's version reads no drop-ins: the field is merged into config.yaml.
    let after = String::from_utf8(tb.read("/var/lib/kubelet/config.yaml").unwrap()).unwrap();
    assert!(after.contains("maxPods: 42"), "{after}");
    assert_eq!(
        after.replace("maxPods: 42\n", ""),
        String::from_utf8(before).unwrap()
    );
    assert!(tb.read("/var/lib/kubelet/bootstrap-kubeconfig").is_err());
    // Nothing changed since: nothing done.
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       already-joined"),
        "{}",
        text(&out)
    );
    assert_eq!(tb.kubelet_starts(), starts + 1);
    // status shows the last change.
    let status = text(&tb.exec_ok(&["kubejoin", "status"]));
    assert!(status.contains("reconciled"), "{status}");
}

/// `[proxy]`: the runtime and kubelet get it (drop-ins, the runtime restarted to take it),
/// its NO_PROXY completed; kubejoin's own requests go straight to the API server even with
/// a proxy in its environment; reset removes the drop-ins.
#[test]
fn a_proxy_goes_to_the_runtime_and_kubelet_and_never_to_the_api_server() {
    if !testbed::available() {
        return;
    }
    // docker's packages bring containerd.service.
    let tb = node(true, "")
        .with_file(
            "/etc/kubejoin/config.d/20-proxy.toml",
            "[host]\ncontainer_runtime = \"containerd\"\n\n[proxy]\nhttp = \"http://127.0.0.1:3128\"\nhttps = \"http://127.0.0.1:3128/\"\nno_proxy = [\".corp.example\", \"10.96.0.0/12\"]\n",
            0o644,
        )
        .boot()
        .unwrap();
    let double = api(&tb, ApiServer::builder());
    let plan = text(&tb.exec_ok(&["kubejoin", "plan"]));
    for line in [
        "host:          would write /etc/systemd/system/containerd.service.d/90-kubejoin-proxy.conf (the proxy for the internet, and what never goes through it)",
        "host:          would write /etc/systemd/system/kubelet.service.d/90-kubejoin-proxy.conf",
        "host:          would Reload (systemd reads the proxy drop-ins)",
        "host:          would RestartUnit containerd.service replace",
    ] {
        assert!(plan.contains(line), "{line:?} not in:\n{plan}");
    }
    // A proxy in kubejoin's own environment, where nothing listens: not used.
    let out = tb
        .command(&["kubejoin", "run"])
        .env("HTTPS_PROXY", "http://127.0.0.1:3128")
        .env("ALL_PROXY", "http://127.0.0.1:3128")
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("outcome:       joined"), "{said}");
    assert!(!double.requests().is_empty());
    let no_proxy = "NO_PROXY=localhost,127.0.0.1,::1,.svc,.cluster.local,";
    // containerd runs with it (restarted after the drop-in), and kubelet started with it.
    let pid = show(&tb, "containerd.service", "MainPID");
    let environ = tb.read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ).replace('\0', "\n");
    for var in [
        "HTTPS_PROXY=http://127.0.0.1:3128\n",
        "http_proxy=http://127.0.0.1:3128\n",
        no_proxy,
    ] {
        assert!(
            environ.contains(var),
            "{var:?} not in containerd's environment:\n{environ}"
        );
    }
    assert!(
        environ.contains(",.corp.example,10.96.0.0/12\n"),
        "{environ}"
    );
    let kubelet = tb.kubelet_invocation().unwrap();
    assert_eq!(kubelet["env"]["HTTPS_PROXY"], "http://127.0.0.1:3128");
    assert!(
        kubelet["env"]["NO_PROXY"]
            .as_str()
            .unwrap()
            .starts_with(&no_proxy["NO_PROXY=".len()..]),
        "{kubelet}"
    );
    // reset removes them.
    tb.exec_ok(&["kubejoin", "reset"]);
    for unit in ["containerd.service", "kubelet.service"] {
        let path = format!("/etc/systemd/system/{unit}.d/90-kubejoin-proxy.conf");
        assert!(tb.read(&path).is_err(), "{path} is still there");
    }
}
