//! The control plane's half, against a REAL control plane (etcd, kube-apiserver,
//! kube-controller-manager from `scripts/real-kubernetes.sh`) that starts bare: none of
//! the seed's objects. `kubejoin cluster prepare` creates them, `kubejoin token create`
//! mints a token and prints a worker's configuration, and a testbed worker with the real
//! kubelet joins with exactly that. `kubejoin doctor` on the worker names each piece
//! when it is removed, and nothing else. The operator's kubejoin runs as a process of this
//! machine on the testbed's loopback, as an operator's would on the control plane; the
//! admin credentials never reach the worker, stdout, stderr or the journal.
//!
//! Slow (a control plane each): run them by name, e.g.
//! `cargo test --test control_plane prepare_mint_join`.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::cluster::{self, ControlPlane, Setup, pin_sysctls, worker};
use support::testbed::{self, Testbed, wait_for};
use support::text;

/// The admin's secrets as they appear in files: its key and certificate, base64 lines.
fn admin_secrets(cp: &ControlPlane) -> Vec<String> {
    let key = std::fs::read_to_string(cp.dir.join("pki/admin.key")).unwrap();
    key.lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 40)
        .map(str::to_string)
        .collect()
}

fn assert_no_admin_secret(cp: &ControlPlane, what: &str, output: &str) {
    for line in admin_secrets(cp) {
        assert!(!output.contains(&line), "{what} holds the admin key");
    }
}

/// The worker's configuration: host preparation kept off this machine's swap and kernel
/// modules, then exactly what `token create --output config` printed.
fn configure_worker(tb: &Testbed, printed: &str) {
    tb.write(
        "/etc/kubejoin/config.toml",
        format!(
            "[host]\ncontainer_runtime = \"containerd\"\nswap = false\nkernel = false\n\n{printed}"
        ),
        0o600,
    );
}

fn prepare(cp: &ControlPlane, tb: &Testbed) -> String {
    let out = cp.kubejoin(tb, &["cluster", "prepare"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_no_admin_secret(cp, "prepare's output", &all);
    all
}

fn mint(cp: &ControlPlane, tb: &Testbed) -> String {
    mint_with(cp, tb, &[])
}

/// [`mint`] with more arguments to `token create`.
fn mint_with(cp: &ControlPlane, tb: &Testbed, more: &[&str]) -> String {
    let mut args = vec![
        "token",
        "create",
        "--output",
        "config",
        "--description",
        "test worker",
    ];
    args.extend(more);
    let out = cp.kubejoin(tb, &args);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_no_admin_secret(cp, "token create's output", &printed);
    assert_no_admin_secret(cp, "token create's errors", &stderr);
    let secret = &token_of(&printed)[7..];
    assert!(
        !stderr.contains(secret),
        "the secret only where asked for: {stderr}"
    );
    printed
}

/// How many bootstrap token Secrets the cluster holds.
fn token_secrets(cp: &ControlPlane, tb: &Testbed) -> usize {
    let secrets = cp.kubectl_json(
        tb,
        &[
            "-n",
            "kube-system",
            "get",
            "secrets",
            "--field-selector",
            "type=bootstrap.kubernetes.io/token",
        ],
    );
    secrets["items"].as_array().unwrap().len()
}

fn token_of(config: &str) -> String {
    config
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a token line")
        .to_string()
}

/// The names of doctor's failed checks, and its exit status.
fn doctor(tb: &Testbed) -> (BTreeSet<String>, Option<i32>, String) {
    let out = tb.exec(&["kubejoin", "doctor", "--output", "json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let failed = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["verdict"] == "fail")
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(v["join_would_succeed"], failed_none(&v), "{v}");
    (failed, out.status.code(), v.to_string())
}

fn failed_none(v: &serde_json::Value) -> bool {
    v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["verdict"] != "fail")
}

/// Waits (RBAC and the signer act within moments) until doctor names exactly `want`.
fn doctor_names(tb: &Testbed, want: &[&str]) -> String {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let mut last = String::new();
    let named = wait_for(Duration::from_secs(20), || {
        let (failed, code, json) = doctor(tb);
        last = format!("{failed:?} exit {code:?}: {json}");
        (failed == want && code == Some(if want.is_empty() { 0 } else { 1 })).then_some(json)
    });
    named.unwrap_or_else(|| panic!("doctor did not name exactly {want:?}: {last}"))
}

/// A bare control plane (none of the seed's objects), with or without the bootstrap
/// signer, beside a booted worker testbed; and the lock that keeps it the only one.
fn bare(version: &str, signer: bool) -> Option<(Testbed, ControlPlane, std::fs::File)> {
    bare_with(
        version,
        Setup {
            seed: false,
            signer,
            token_auth: true,
            ..Default::default()
        },
    )
}

fn bare_with(version: &str, setup: Setup) -> Option<(Testbed, ControlPlane, std::fs::File)> {
    let bin = cluster::binaries(version)?;
    if !testbed::available() {
        return None;
    }
    let lock = testbed::lock_swap().unwrap();
    let tb = worker(&bin).boot().unwrap();
    pin_sysctls(&tb);
    let cp = ControlPlane::start_with(&tb, version, &bin, setup);
    Some((tb, cp, lock))
}

/// Bare cluster -> prepare -> token create -> a worker joins with that configuration.
fn prepare_mint_join(version: &str) {
    let Some((tb, cp, _lock)) = bare(version, true) else {
        return;
    };
    // No token before cluster-info exists: workers could not use it.
    let out = cp.kubejoin(&tb, &["token", "create"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("run `kubejoin cluster prepare` first"),
        "{}",
        text(&out)
    );
    assert!(out.stdout.is_empty());

    // The cluster runs its DNS (as CoreDNS's Service), and publishes no kubelet
    // configuration yet.
    cp.create_dns_service(&tb);

    // The plan, changing nothing.
    let out = cp.kubejoin(&tb, &["cluster", "prepare", "--dry-run"]);
    let plan = text(&out);
    assert!(out.status.success(), "{plan}");
    for piece in [
        "would create ConfigMap kube-public/cluster-info",
        "would create Role kube-public/kubeadm:bootstrap-signer-clusterinfo, RoleBinding kube-public/kubeadm:bootstrap-signer-clusterinfo",
        "would create ClusterRoleBinding kubeadm:kubelet-bootstrap",
        "would create ClusterRoleBinding kubeadm:node-autoapprove-bootstrap",
        "would create ClusterRoleBinding kubeadm:node-autoapprove-certificate-rotation",
        "would create ClusterRole kubeadm:get-nodes, ClusterRoleBinding kubeadm:get-nodes",
        "would create ConfigMap kube-system/kubelet-config: clusterDNS 10.96.0.10 (Service kube-system/kube-dns)",
        "would create Role kube-system/kubeadm:kubelet-config, RoleBinding kube-system/kubeadm:kubelet-config",
    ] {
        assert!(plan.contains(piece), "{piece}:\n{plan}");
    }
    assert!(
        !cp.kubectl_out(
            &tb,
            &["-n", "kube-public", "get", "configmap", "cluster-info"]
        )
        .status
        .success()
    );

    // Prepare: everything created, the signer seen signing.
    let first = prepare(&cp, &tb);
    eprintln!("{plan}\n{first}");
    let result = first.split("result:").nth(1).expect("a result section");
    assert_eq!(result.matches(" created ").count(), 8, "{first}");
    assert!(
        result.contains("bootstrap-signer             ok        signed a probe token in"),
        "{first}"
    );
    assert!(
        result.contains(
            "bootstrap-token-auth         ok        the API server accepts the probe token"
        ),
        "{first}"
    );
    // The probe token is gone.
    assert_eq!(token_secrets(&cp, &tb), 0, "the probe token is deleted");
    // kubeadm's shape.
    let cm = cp.kubectl_json(
        &tb,
        &["-n", "kube-public", "get", "configmap", "cluster-info"],
    );
    let kubeconfig = cm["data"]["kubeconfig"].as_str().unwrap();
    assert!(
        kubeconfig.contains("server: https://127.0.0.1:6443\n  name: \"\"\ncontexts: null\n"),
        "{kubeconfig}"
    );

    // Again: nothing to do.
    let again = prepare(&cp, &tb);
    let result = again.split("result:").nth(1).unwrap();
    assert!(!result.contains("created"), "{again}");
    assert_eq!(result.matches("\n  ").count(), 10 + 1, "{again}"); // 10 items + cluster-info's loopback fix

    // Mint: the worker's configuration, its pin the cluster CA's; a single-use token.
    let printed = mint_with(&cp, &tb, &["--single-use"]);
    assert!(
        printed.contains(&format!("ca_cert_hashes = [\"{}\"]", cp.ca_pin())),
        "{printed}"
    );
    assert!(
        printed.contains("server = \"https://127.0.0.1:6443\""),
        "{printed}"
    );
    let token = token_of(&printed);
    let id = &token[..6];
    let list = text(&cp.kubejoin(&tb, &["token", "list"]));
    assert!(list.contains(id) && list.contains("test worker"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with(id) && l.contains(" yes ")),
        "signed: {list}"
    );
    assert!(!list.contains(&token[7..]), "token list shows a secret");
    assert!(
        list.lines()
            .any(|l| l.starts_with(id) && l.contains(" yes ") && l.contains(" yes ")),
        "single-use: {list}"
    );
    let header = list.lines().next().unwrap();
    let column = header.find("SINGLE-USE").expect("a SINGLE-USE column");
    let row = list.lines().find(|l| l.starts_with(id)).unwrap();
    assert_eq!(&row[column..column + 3], "yes", "{list}");

    // The worker: doctor says a join would succeed, then the join.
    configure_worker(&tb, &printed);
    doctor_names(&tb, &[]);
    let doctor = text(&tb.exec(&["kubejoin", "doctor"]));
    eprintln!("{doctor}");
    assert!(
        doctor.contains("ok    kubelet-config       a join starts kubelet's configuration from the cluster's kube-system/kubelet-config (clusterDNS [\"10.96.0.10\"])"),
        "{doctor}"
    );
    let out = tb.exec(&["kubejoin", "run"]);
    let report = text(&out);
    assert!(
        out.status.success(),
        "{report}\n--- kubelet:\n{}",
        text(&tb.exec(&["journalctl", "--no-pager", "-n", "60", "-u", "kubelet"]))
    );
    assert!(report.contains("outcome:       joined"), "{report}");
    let hostname = text(&tb.exec_ok(&["hostname"])).trim().to_string();
    let node = cp.kubectl_json(&tb, &["get", "node", &hostname]);
    assert_eq!(node["metadata"]["name"], hostname.as_str());
    // kubelet runs with the configuration prepare published: the cluster's DNS.
    assert!(
        report.contains("kubelet conf:  the cluster's kube-system/kubelet-config"),
        "{report}"
    );
    let configz = cp.configz(&tb);
    assert_eq!(
        configz["clusterDNS"],
        serde_json::json!(["10.96.0.10"]),
        "{configz}"
    );
    let csrs = cp.kubectl_json(&tb, &["get", "csr"]).to_string();
    assert!(
        csrs.contains(&format!("system:bootstrap:{id}")) && csrs.contains("\"Approved\""),
        "{csrs}"
    );

    single_use_burned(&cp, &tb, &printed, &report);
    // A token that stays (not single-use), for what follows.
    let printed = mint(&cp, &tb);
    let id = &token_of(&printed)[..6];

    if version != "v1.20.2" {
        admin_by_bearer_token(&cp, &tb, id);
    } else {
        other_outputs(&cp, &tb);
    }

    // Another server for workers: the existing cluster-info is reported, never replaced.
    let out = cp.kubejoin(
        &tb,
        &["cluster", "prepare", "--server", "https://localhost:6443"],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("cluster-info                 differs   it names server https://127.0.0.1:6443, not https://localhost:6443; left as it is"), "{all}");
    let cm = cp.kubectl_json(
        &tb,
        &["-n", "kube-public", "get", "configmap", "cluster-info"],
    );
    assert!(
        cm["data"]["kubeconfig"]
            .as_str()
            .unwrap()
            .contains("server: https://127.0.0.1:6443")
    );

    // Deleting a token: it is gone from the list.
    let out = cp.kubejoin(&tb, &["token", "delete", id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&cp.kubejoin(&tb, &["token", "list"])).contains(id));
    let out = cp.kubejoin(&tb, &["token", "delete", id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains(&format!("there is no bootstrap token {id}")),
        "{}",
        text(&out)
    );

    // Admin credentials stayed on the operator's side.
    let journal = tb.exec_text(&["journalctl", "--no-pager", "-o", "cat"]);
    assert_no_admin_secret(&cp, "the worker's journal", &journal);
    assert!(tb.read("/etc/kubernetes/admin.conf").is_err());
}

/// A single-use token after the join: the node burned it; the token, wherever a copy of
/// it is, is refused by the API server and cannot make a CSR, which a live token can; its
/// Role and RoleBinding went with it; a second node with the same token is told why it
/// cannot join, and what to do.
fn single_use_burned(cp: &ControlPlane, tb: &Testbed, printed: &str, report: &str) {
    let token = token_of(printed);
    let id = &token[..6];
    assert!(
        report.contains(&format!(
            "bootstrap token {id} deleted on the cluster (single-use): no copy of it works any more"
        )),
        "{report}"
    );
    let secret = format!("bootstrap-token-{id}");
    let named = format!("kubejoin:bootstrap-token-{id}");
    let gone = |kind: &str, name: &str| {
        !cp.kubectl_out(tb, &["-n", "kube-system", "get", kind, name])
            .status
            .success()
    };
    assert!(gone("secret", &secret), "the Secret is deleted");
    // The garbage collector removes what the Secret owned.
    let collected = wait_for(Duration::from_secs(60), || {
        (gone("role", &named) && gone("rolebinding", &named)).then_some(())
    });
    assert!(
        collected.is_some(),
        "Role and RoleBinding {named} are still there"
    );
    assert!(!text(&cp.kubejoin(tb, &["token", "list"])).contains(id));

    // The token, as a copy of the user-data would hold it: 401, and no CSR. A live
    // token's same request makes one.
    let csr = cp.dir.join("thief-csr.json");
    let out = cluster::run(std::process::Command::new("sh").arg("-c").arg(
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
         -keyout /dev/null -subj /O=system:nodes/CN=system:node:thief 2>/dev/null | base64 -w0",
    ));
    let request = String::from_utf8(out.stdout).unwrap();
    std::fs::write(
        &csr,
        serde_json::json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": { "generateName": "thief-" },
            "spec": {
                "request": request,
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["digital signature", "key encipherment", "client auth"],
            },
        })
        .to_string(),
    )
    .unwrap();
    let create_csr = [
        "create",
        "--validate=false",
        "-f",
        csr.to_str().unwrap(),
        "-o",
        "name",
    ];
    // kube-apiserver caches a token's authentication for 10 s (its token success cache):
    // the burned token works that long after the node last used it, and no longer.
    let burned_at = std::time::Instant::now();
    assert!(
        cp.refuses_token_within_30s(tb, &token),
        "the burned token still works 30 s on"
    );
    eprintln!(
        "the burned token was refused {:.1} s after the join's report",
        burned_at.elapsed().as_secs_f64()
    );
    let out = cp.kubectl_as_token(tb, "burned", &token, &create_csr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Unauthorized"), "{}", text(&out));
    let live = token_of(&mint(cp, tb));
    let out = cp.kubectl_as_token(tb, "live", &live, &create_csr);
    assert!(out.status.success(), "{}", text(&out));
    let made = String::from_utf8(out.stdout).unwrap();
    assert!(made.starts_with("certificatesigningrequest"), "{made}");
    cp.kubectl_out(tb, &["delete", made.trim()]);
    let out = cp.kubejoin(tb, &["token", "delete", &live[..6]]);
    assert!(out.status.success(), "{}", text(&out));

    // A second node with the same token (this one, reset): told at once, and not
    // retried by systemd (exit 2).
    let out = tb.exec(&["kubejoin", "reset"]);
    assert!(out.status.success(), "{}", text(&out));
    let second = tb.exec(&["kubejoin", "run"]);
    let said = text(&second);
    assert_eq!(second.status.code(), Some(2), "{said}");
    let refused = format!(
        "cluster-info has no signature for token id {id}, and the API server at https://127.0.0.1:6443 refuses the token (401 Unauthorized)"
    );
    for needle in [
        refused.as_str(),
        "single-use and burned by the node that joined with it",
        "a single-use token joins one node",
    ] {
        assert!(said.contains(needle), "{needle}: {said}");
    }
    assert!(
        !said.contains(&token[7..]),
        "the secret in an error: {said}"
    );
}

/// `token create --output cloud-init` and `--output json`: the same server, pin and a
/// fresh token each, every one in the list.
fn other_outputs(cp: &ControlPlane, tb: &Testbed) {
    let out = cp.kubejoin(
        tb,
        &["token", "create", "--output", "cloud-init", "--ttl", "0"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let user_data = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_saphyr::from_str(&user_data).unwrap();
    let files = v["write_files"].as_array().unwrap();
    let config = files[0]["content"].as_str().unwrap();
    assert!(config.contains(&cp.ca_pin()), "{config}");
    assert!(
        config.contains("token_file = \"/etc/kubejoin/token\""),
        "{config}"
    );
    let token = files[1]["content"].as_str().unwrap().to_string();
    assert_eq!(files[1]["permissions"], "0600");
    // cloud-init's tokens are single-use unless told otherwise.
    let out = cp.kubejoin(tb, &["token", "list", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == token[..6])
        .unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(row["single_use"], "yes", "{row}");

    let out = cp.kubejoin(tb, &["token", "create", "--output", "json", "--ttl", "1h"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["server"], "https://127.0.0.1:6443");
    assert_eq!(v["ca_cert_hashes"][0], cp.ca_pin().as_str());
    assert_eq!(v["signed"], true);
    assert_eq!(
        v["token"].as_str().unwrap()[..6],
        *v["id"].as_str().unwrap()
    );
    assert_ne!(v["token"].as_str().unwrap(), token);

    let out = cp.kubejoin(tb, &["token", "list", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |id: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        row(&token[..6])["expires"],
        serde_json::Value::Null,
        "--ttl 0 never expires"
    );
    assert!(row(v["id"].as_str().unwrap())["expires"].is_string());
    assert!(
        !rows.to_string().contains(&token[7..]),
        "a secret in token list"
    );
}

/// An admin kubeconfig with a bearer token (a ServiceAccount's, bound to cluster-admin)
/// instead of a client certificate: kubejoin lists the tokens with it and never shows it.
fn admin_by_bearer_token(cp: &ControlPlane, tb: &Testbed, id: &str) {
    for args in [
        &[
            "-n",
            "kube-system",
            "create",
            "serviceaccount",
            "kubejoin-admin",
        ][..],
        &[
            "create",
            "clusterrolebinding",
            "kubejoin-admin",
            "--clusterrole=cluster-admin",
            "--serviceaccount=kube-system:kubejoin-admin",
        ],
    ] {
        let out = cp.kubectl_out(tb, args);
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = cp.kubectl_out(
        tb,
        &["-n", "kube-system", "create", "token", "kubejoin-admin"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let bearer = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let conf = cp.token_kubeconfig("admin", &bearer);
    let out = cp.kubejoin_as(tb, &conf, &["token", "list"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains(id), "{all}");
    assert!(
        !all.contains(&bearer[bearer.len() - 20..]),
        "the bearer token is shown"
    );
}

#[test]
fn prepare_mint_join_v1_20() {
    prepare_mint_join("v1.20.2");
}

#[test]
fn prepare_mint_join_v1_36() {
    prepare_mint_join("v1.36.2");
}

/// Each piece removed in turn: doctor names exactly it; `cluster prepare` puts it back.
#[test]
fn doctor_names_each_missing_piece() {
    let Some((tb, cp, _lock)) = bare("v1.20.2", true) else {
        return;
    };
    prepare(&cp, &tb);
    let printed = mint(&cp, &tb);
    configure_worker(&tb, &printed);
    doctor_names(&tb, &[]);

    let kubectl = |args: &[&str]| {
        let out = cp.kubectl_out(&tb, args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    };
    let table: [(&[&str], &[&str], &str); 4] = [
        (
            &[
                "-n",
                "kube-public",
                "delete",
                "rolebinding",
                "kubeadm:bootstrap-signer-clusterinfo",
            ],
            &["cluster-info"],
            "kubeadm:bootstrap-signer-clusterinfo",
        ),
        (
            &["-n", "kube-public", "delete", "configmap", "cluster-info"],
            &["cluster-info"],
            "does not exist (404)",
        ),
        (
            &["delete", "clusterrolebinding", "kubeadm:kubelet-bootstrap"],
            &["csr-create"],
            "ClusterRoleBinding kubeadm:kubelet-bootstrap",
        ),
        (
            &[
                "delete",
                "clusterrolebinding",
                "kubeadm:node-autoapprove-bootstrap",
            ],
            &["csr-auto-approve"],
            "kubeadm:node-autoapprove-bootstrap",
        ),
    ];
    for (removal, names, says) in table {
        kubectl(removal);
        let json = doctor_names(&tb, names);
        assert!(json.contains(says), "{removal:?}: {json}");
        let human = text(&tb.exec(&["kubejoin", "doctor"]));
        assert!(human.contains("a join would not succeed"), "{human}");
        prepare(&cp, &tb);
        doctor_names(&tb, &[]);
    }

    // A wrong pin.
    let wrong = printed.replace(&cp.ca_pin(), &format!("sha256:{}", "ab".repeat(32)));
    configure_worker(&tb, &wrong);
    let json = doctor_names(&tb, &["ca-pin"]);
    assert!(
        json.contains(&cp.ca_pin()),
        "the fix names the real pin: {json}"
    );
    configure_worker(&tb, &printed);

    // A server that does not answer: a warning beside one that does (a join tries them
    // in turn), a failure alone.
    let server = "server = \"https://127.0.0.1:6443\"";
    assert!(printed.contains(server));
    configure_worker(
        &tb,
        &printed.replace(
            server,
            "servers = [\"https://127.0.0.1:1\", \"https://127.0.0.1:6443\"]",
        ),
    );
    let json = doctor_names(&tb, &[]);
    assert!(
        json.contains("\"name\":\"reach https://127.0.0.1:1\",\"verdict\":\"warn\""),
        "{json}"
    );
    configure_worker(
        &tb,
        &printed.replace(server, "server = \"https://127.0.0.1:1\""),
    );
    let json = doctor_names(&tb, &["reach https://127.0.0.1:1"]);
    assert!(json.contains("no firewall drops the connection"), "{json}");
    configure_worker(&tb, &printed);

    // No SelfSubjectAccessReview for authenticated users: the token's rights cannot be
    // asked, which doctor says as a warning (the join may still work).
    kubectl(&["delete", "clusterrolebinding", "system:basic-user"]);
    let json = wait_for(Duration::from_secs(20), || {
        let (_, _, json) = doctor(&tb);
        json.contains("\"name\":\"token-review\",\"verdict\":\"warn\"")
            .then_some(json)
    })
    .expect("a token-review warning");
    assert!(json.contains("system:basic-user"), "{json}");
    kubectl(&[
        "create",
        "clusterrolebinding",
        "system:basic-user",
        "--clusterrole=system:basic-user",
        "--group=system:authenticated",
    ]);
    doctor_names(&tb, &[]);

    // The token deleted: unknown to the API server, no signature.
    let id = &token_of(&printed)[..6];
    let out = cp.kubejoin(&tb, &["token", "delete", id]);
    assert!(out.status.success(), "{}", text(&out));
    let json = doctor_names(&tb, &["signature", "token"]);
    assert!(json.contains("unknown, expired or deleted"), "{json}");
    // Discovery with it ends at once, as needing a person: systemd does not restart it.
    let started = std::time::Instant::now();
    let out = tb.exec(&["kubejoin", "discover"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out)
            .contains("refuses the token (401 Unauthorized): it is unknown, expired or deleted"),
        "{}",
        text(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    // A token that may authenticate but not sign: the signature is missing although the
    // API server accepts the token.
    kubectl(&[
        "-n",
        "kube-system",
        "create",
        "secret",
        "generic",
        "bootstrap-token-nosign",
        "--type=bootstrap.kubernetes.io/token",
        "--from-literal=token-id=nosign",
        "--from-literal=token-secret=0123456789abcdef",
        "--from-literal=usage-bootstrap-authentication=true",
    ]);
    tb.write("/etc/kubejoin/token", "nosign.0123456789abcdef\n", 0o600);
    let no_token_line: String = printed
        .lines()
        .filter(|l| !l.starts_with("token = "))
        .map(|l| format!("{l}\n"))
        .collect();
    configure_worker(&tb, &no_token_line);
    let json = doctor_names(&tb, &["signature"]);
    assert!(
        json.contains("yet the API server accepts the token"),
        "{json}"
    );
}

/// Without the bootstrap signer: prepare says which controller-manager flag is missing,
/// token create warns, doctor names the signer.
#[test]
fn a_cluster_without_the_signer() {
    let Some((tb, cp, _lock)) = bare("v1.20.2", false) else {
        return;
    };
    let out = cp.kubejoin(&tb, &["cluster", "prepare", "--signer-timeout", "5s"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("bootstrap-signer             FAILED"), "{all}");
    assert!(
        all.contains("--controllers=*,bootstrapsigner,tokencleaner"),
        "{all}"
    );
    assert!(
        all.contains("not ready for joins: bootstrap-signer"),
        "{all}"
    );
    // The probe token was deleted all the same.
    assert_eq!(token_secrets(&cp, &tb), 0, "the probe token is deleted");

    let out = cp.kubejoin(&tb, &["token", "create", "--output", "config"]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds no signature") && stderr.contains("bootstrapsigner"),
        "{stderr}"
    );
    configure_worker(&tb, &String::from_utf8(out.stdout).unwrap());
    let json = doctor_names(&tb, &["signature"]);
    assert!(json.contains("the bootstrap signer does not run"), "{json}");
}

/// A cluster made by hand, as the seed does it, under the seed's own object names: the
/// rights count whatever grants them; the seed's cluster-info (a named cluster, no
/// current context) is one workers cannot use, which prepare says, and replaces only
/// once it is deleted.
#[test]
fn the_seeds_own_objects_count() {
    let Some((tb, cp, _lock)) = bare("v1.20.2", true) else {
        return;
    };
    let rbac = cp.dir.join("seed-rbac.yaml");
    let binding = |name: &str, group: &str, role: &str| {
        format!(
            "kind: ClusterRoleBinding\napiVersion: rbac.authorization.k8s.io/v1\nmetadata:\n  name: {name}\nsubjects:\n- kind: Group\n  name: {group}\n  apiGroup: rbac.authorization.k8s.io\nroleRef:\n  kind: ClusterRole\n  name: {role}\n  apiGroup: rbac.authorization.k8s.io\n"
        )
    };
    std::fs::write(
        &rbac,
        [
            binding(
                "create-csrs-for-bootstrapping",
                "system:bootstrappers",
                "system:node-bootstrapper",
            ),
            binding(
                "auto-approve-csrs-for-group",
                "system:bootstrappers",
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            ),
            binding(
                "auto-approve-renewals-for-nodes",
                "system:nodes",
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            ),
        ]
        .join("---\n"),
    )
    .unwrap();
    let public = cp
        .dir
        .join("bootstrap-kubeconfig-public")
        .display()
        .to_string();
    let ca = cp.dir.join("pki/ca.crt").display().to_string();
    for args in [
        vec!["create", "-f", rbac.to_str().unwrap()],
        vec![
            "config",
            "set-cluster",
            "bootstrap",
            &format!("--kubeconfig={public}"),
            "--server=https://127.0.0.1:6443",
            &format!("--certificate-authority={ca}"),
            "--embed-certs=true",
        ],
        vec![
            "-n",
            "kube-public",
            "create",
            "configmap",
            "cluster-info",
            &format!("--from-file=kubeconfig={public}"),
        ],
        vec![
            "create",
            "role",
            "anonymous-for-cluster-info",
            "--resource=configmaps",
            "--resource-name=cluster-info",
            "--namespace=kube-public",
            "--verb=get,list,watch",
        ],
        vec![
            "create",
            "rolebinding",
            "anonymous-for-cluster-info-binding",
            "--role=anonymous-for-cluster-info",
            "--user=system:anonymous",
            "--namespace=kube-public",
        ],
    ] {
        let out = cp.kubectl_out(&tb, &args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    }

    let out = cp.kubejoin(
        &tb,
        &["cluster", "prepare", "--dry-run", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let item = |name: &str| {
        report["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap()
            .clone()
    };
    for (name, granted_by) in [
        ("anonymous-read", ""),
        ("bootstrappers-create-csr", "create-csrs-for-bootstrapping"),
        ("bootstrappers-auto-approve", "auto-approve-csrs-for-group"),
        ("nodes-auto-renew", "auto-approve-renewals-for-nodes"),
    ] {
        let i = item(name);
        assert_eq!(i["found"], "present", "{i}");
        assert!(i["detail"].as_str().unwrap().contains(granted_by), "{i}");
    }
    let info = item("cluster-info");
    assert_eq!(info["outcome"], "failed", "{info}");
    assert!(
        info["detail"]
            .as_str()
            .unwrap()
            .contains("not usable by workers"),
        "{info}"
    );

    // Deleted, it is written in kubeadm's shape; of the rest, only the kubelet
    // configuration the manual procedure does not publish is created.
    let out = cp.kubectl_out(
        &tb,
        &["-n", "kube-public", "delete", "configmap", "cluster-info"],
    );
    assert!(out.status.success());
    let all = prepare(&cp, &tb);
    let result = all.split("result:").nth(1).unwrap();
    assert_eq!(result.matches(" created ").count(), 4, "{all}");
    for created in [
        "cluster-info",
        "bootstrappers-get-nodes",
        "kubelet-config",
        "kubelet-config-read",
    ] {
        assert!(result.contains(&format!("{created:<28} created")), "{all}");
    }
    for kubeadm_name in [
        "kubeadm:kubelet-bootstrap",
        "kubeadm:node-autoapprove-bootstrap",
    ] {
        assert!(
            !cp.kubectl_out(&tb, &["get", "clusterrolebinding", kubeadm_name])
                .status
                .success()
        );
    }
}

/// Without bootstrap token authentication on kube-apiserver: prepare names the flag;
/// doctor says the token is refused.
#[test]
fn a_cluster_without_bootstrap_token_auth() {
    let Some((tb, cp, _lock)) = bare_with(
        "v1.20.2",
        Setup {
            seed: false,
            signer: true,
            token_auth: false,
            ..Default::default()
        },
    ) else {
        return;
    };
    let out = cp.kubejoin(&tb, &["cluster", "prepare"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("bootstrap-token-auth         FAILED"), "{all}");
    assert!(all.contains("--enable-bootstrap-token-auth=true"), "{all}");
    assert!(
        all.contains("not ready for joins: bootstrap-token-auth"),
        "{all}"
    );
    configure_worker(&tb, &mint(&cp, &tb));
    let json = doctor_names(&tb, &["token"]);
    assert!(
        json.contains("--enable-bootstrap-token-auth=true"),
        "{json}"
    );
}

/// A certificate for `cn` from the cluster CA, with openssl's dates (`-days 30`, or a
/// window in the past), as kubelet keeps it: certificate and key in one PEM.
fn node_certificate(cp: &ControlPlane, cn: &str, dates: &str) -> String {
    let dir = cp.dir.join(format!("issued-{cn}"));
    std::fs::create_dir_all(dir.join("new")).unwrap();
    let d = dir.display();
    let pki = cp.dir.join("pki");
    let script = format!(
        "set -e; cd {d}; : > index.txt; echo 1000 > serial
         printf '%s\\n' '[ca]' 'default_ca = d' '[d]' 'dir = {d}' 'database = {d}/index.txt' \
           'new_certs_dir = {d}/new' 'serial = {d}/serial' 'default_md = sha256' 'policy = p' \
           'x509_extensions = e' 'unique_subject = no' '[p]' 'organizationName = supplied' 'commonName = supplied' \
           '[e]' 'extendedKeyUsage = clientAuth' 'keyUsage = critical,digitalSignature,keyEncipherment' > cnf
         openssl ecparam -name prime256v1 -genkey -noout -out k.pem
         openssl req -new -key k.pem -subj '/O=system:nodes/CN=system:node:{cn}' -out r.csr
         openssl ca -batch -notext -config cnf -cert {ca} -keyfile {key} {dates} -in r.csr -out c.pem 2>/dev/null
         cat c.pem k.pem",
        ca = pki.join("ca.crt").display(),
        key = pki.join("ca.key").display(),
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Files the worker changed or holds in /run that contain `secret`.
fn holding(tb: &Testbed, secret: &str) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, secret: &[u8], out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                walk(base, &p, secret, out);
            } else if meta.is_file()
                && std::fs::read(&p).is_ok_and(|b| b.windows(secret.len()).any(|w| w == secret))
            {
                out.push(format!("/{}", p.strip_prefix(base).unwrap().display()));
            }
        }
    }
    let upper = tb.dir().join("layers/upper");
    let mut out = Vec::new();
    walk(&upper, &upper, secret.as_bytes(), &mut out);
    let run = tb.exec(&["grep", "-rlF", secret, "/run", "/tmp"]);
    out.extend(
        text(&run)
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(str::to_string),
    );
    out
}

/// A node's life after the join, on a real v1.36 control plane and kubelet: a Ready Node
/// of this node's name stops the join before kubelet starts; once in, no file holds the
/// token; with the token deleted on the cluster, a changed configuration is applied (the
/// cluster's kubelet configuration read as the node) and a stopped kubelet started; a
/// disk with another node's certificate or an expired one is bootstrapped anew with a new
/// token, and without one the run exits 2 naming why.
#[test]
fn a_nodes_life_after_the_join() {
    let Some((tb, cp, _lock)) = bare("v1.36.2", true) else {
        return;
    };
    cp.create_dns_service(&tb);
    prepare(&cp, &tb);
    let printed = mint(&cp, &tb);
    let token = token_of(&printed);
    // As cloud-init writes it: the token in its own file.
    configure_worker(
        &tb,
        &printed.replace(
            &format!("token = \"{token}\""),
            "token_file = \"/etc/kubejoin/token\"",
        ),
    );
    tb.write("/etc/kubejoin/token", format!("{token}\n"), 0o600);
    let hostname = tb.exec_text(&["hostname"]).trim().to_string();

    // A Ready Node named as this node will be: another machine's. The join stops before
    // kubelet starts, naming it.
    let twin = cp.dir.join("twin.json");
    std::fs::write(
        &twin,
        r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "twin"}}"#,
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        let out = cp.kubectl_out(&tb, args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    };
    kubectl(&["create", "-f", twin.to_str().unwrap()]);
    let now = tb.exec_text(&["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"]);
    let now = now.trim();
    kubectl(&[
        "patch",
        "node",
        "twin",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status": {{"conditions": [{{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "another machine", "lastHeartbeatTime": "{now}", "lastTransitionTime": "{now}"}}]}}}}"#
        ),
    ]);
    tb.write(
        "/etc/kubejoin/config.d/50-name.toml",
        "[kubelet]\nnode_name = \"twin\"\n",
        0o644,
    );
    let out = tb.exec(&["kubejoin", "run"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("a Node named twin exists in the cluster and is Ready"),
        "{said}"
    );
    assert!(said.contains("kubectl delete node twin"), "{said}");
    assert!(!tb.unit_state("kubelet.service").starts_with("active"));
    assert!(tb.read("/etc/kubejoin/token").is_ok(), "the token is kept");

    // Under its own name it joins; then no file on the node holds the token.
    tb.exec_ok(&["rm", "/etc/kubejoin/config.d/50-name.toml"]);
    let out = tb.exec(&["kubejoin", "run"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("outcome:       joined"), "{said}");
    assert!(
        said.contains(&format!("node:          {hostname}")),
        "{said}"
    );
    // Real kubelet on a cluster without a network plugin: NotReady, and why.
    assert!(
        said.contains(
            "ready:         NotReady: no network plugin yet (expected until one is installed)"
        ),
        "{said}"
    );
    let status = tb.exec_text(&["kubejoin", "status"]);
    assert!(
        status.contains("ready:         NotReady: no network plugin yet"),
        "{status}"
    );
    let doctor = tb.exec_text(&["kubejoin", "doctor"]);
    assert!(
        doctor.contains("warn  node-ready           NotReady: no network plugin yet"),
        "{doctor}"
    );
    let secret = &token[7..];
    assert_eq!(
        holding(&tb, secret),
        Vec::<String>::new(),
        "files holding the token"
    );

    // The token deleted on the cluster: the node needs none.
    let out = cp.kubejoin(&tb, &["token", "delete", &token[..6]]);
    assert!(out.status.success(), "{}", text(&out));

    // A fleet-wide change: applied, kubelet restarted, the cluster's configuration read as
    // the node; then nothing to do.
    tb.write(
        "/etc/kubejoin/config.d/60-fleet.toml",
        "[kubelet.config]\nmaxPods = 42\n",
        0o644,
    );
    let out = tb.exec(&["kubejoin", "run"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for line in [
        "outcome:       reconciled",
        "file:          update /etc/kubernetes/kubelet.conf.d/50-kubejoin.conf",
        &format!("fields), read as node {hostname}"),
        "kubelet conf:  the cluster's kube-system/kubelet-config",
    ] {
        assert!(said.contains(line), "{line:?} not in:\n{said}");
    }
    let configz = cp.configz(&tb);
    assert_eq!(configz["maxPods"], 42, "{configz}");
    assert_eq!(
        configz["clusterDNS"],
        serde_json::json!(["10.96.0.10"]),
        "{configz}"
    );
    let out = tb.exec_ok(&["kubejoin", "run"]);
    assert!(
        text(&out).contains("outcome:       already-joined"),
        "{}",
        text(&out)
    );

    // kubelet stopped (as after a crash, or a boot where it did not start): started with
    // its own credentials, the Node Ready again.
    tb.exec_ok(&["systemctl", "stop", "kubelet.service"]);
    let out = tb.exec(&["kubejoin", "run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("outcome:       started"),
        "{}",
        text(&out)
    );

    // A disk with another node's certificate, then an expired one of this node: without a
    // token, exit 2 naming why; with a new one, kubelet bootstraps anew as this node.
    // kubelet's link to its dated certificate: replaced inside the testbed by a file (a
    // write through the link from outside would follow it on this machine).
    let current = "/var/lib/kubelet/kubelet-client-current.pem";
    for (cn, dates, why, hint) in [
        (
            "another-node",
            "-days 30",
            "is for node another-node, and this node is",
            "set [kubelet] node_name = \"another-node\"",
        ),
        (
            hostname.as_str(),
            "-startdate 20200101000000Z -enddate 20200102000000Z",
            "not a client certificate of the cluster CA",
            "",
        ),
    ] {
        tb.exec_ok(&["systemctl", "stop", "kubelet.service"]);
        tb.exec_ok(&["rm", "-f", current]);
        tb.write(current, node_certificate(&cp, cn, dates), 0o600);
        let started = std::time::Instant::now();
        let out = tb.exec(&["kubejoin", "run"]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        for needle in [why, "has no bootstrap token to join again", hint] {
            assert!(said.contains(needle), "{needle:?} not in:\n{said}");
        }
        assert!(started.elapsed() < Duration::from_secs(20));
        if cn != hostname {
            // A disk cloned from another node into a new machine: no Node of this name.
            kubectl(&["delete", "node", &hostname]);
        }
        let printed = mint(&cp, &tb);
        tb.write(
            "/etc/kubejoin/token",
            format!("{}\n", token_of(&printed)),
            0o600,
        );
        let out = tb.exec(&["kubejoin", "run"]);
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("outcome:       joined"), "{said}");
        let subject = tb.exec_text(&[
            "openssl", "x509", "-noout", "-subject", "-enddate", "-in", current,
        ]);
        assert!(
            subject.contains(&format!("system:node:{hostname}")),
            "{subject}"
        );
        assert!(!subject.contains("2020"), "{subject}");
        assert!(tb.read("/etc/kubejoin/token").is_err());
    }
    let node = cp.kubectl_json(&tb, &["get", "node", &hostname]);
    assert_eq!(node["metadata"]["name"], hostname.as_str());
}
