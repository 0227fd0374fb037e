//! Workers in restricted networks, with a REAL kubelet v1.36.2 and containerd against a
//! REAL control plane, in a testbed that has no route anywhere (its own loopback only):
//! - air-gapped: no registry at all; the sandbox and pod images come from
//!   `[host] image_archives` and a static pod runs;
//! - behind a proxy: the internet only through a CONNECT proxy on loopback that logs what
//!   it carries; a registry with its own CA stands for the internet's registries, and
//!   mirrors registry.k8s.io, whose sandbox image kubelet's first pod needs; kubejoin's
//!   own requests never go through the proxy, containerd's pulls do; a private
//!   repository is pulled with the credentials kubejoin gives kubelet.
//!
//! Slow (a control plane and a kubelet each): run them by name, e.g.
//! `cargo test --test restricted air_gapped`.

mod support;

use std::path::Path;
use std::time::Duration;

use support::cluster::{
    self, ControlPlane, configure, host_sysctls, in_netns_of, pin_sysctls, testbed_containerd,
    worker,
};
use support::testbed::{self, Testbed};
use support::text;

const VERSION: &str = "v1.36.2";

/// The testbed reaches nothing but itself.
fn assert_no_route(tb: &Testbed) {
    let routes = text(&tb.exec_ok(&["ip", "route", "show", "default"]));
    assert!(routes.trim().is_empty(), "a default route: {routes}");
}

fn pod_manifest(image: &str, pull: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper\n  namespace: default\nspec:\n  hostNetwork: true\n  containers:\n  - name: sleeper\n    image: {image}\n    imagePullPolicy: {pull}\n"
    )
}

fn static_pod_runs(tb: &Testbed, cp: &ControlPlane, image: &str, pull: &str) {
    tb.write(
        "/etc/kubernetes/manifests/sleeper.yaml",
        pod_manifest(image, pull),
        0o644,
    );
    let node = text(&tb.exec_ok(&["hostname"])).trim().to_string();
    let pod = format!("sleeper-{node}");
    let running = testbed::wait_for(Duration::from_secs(180), || {
        (cp.pod_field(tb, &pod, "{.status.phase}") == "Running").then_some(())
    });
    assert!(
        running.is_some(),
        "the static pod did not run: {}\n--- kubelet:\n{}\n--- containerd:\n{}",
        text(&cp.kubectl_out(tb, &["get", "pod", "-n", "default", &pod, "-o", "yaml"])),
        text(&tb.exec(&["journalctl", "--no-pager", "-n", "40", "-u", "kubelet"])),
        text(&tb.exec(&["journalctl", "--no-pager", "-n", "40", "-u", "containerd"]))
    );
}

fn images(tb: &Testbed) -> String {
    text(&tb.exec_ok(&["ctr", "--namespace", "k8s.io", "images", "list", "--quiet"]))
}

#[test]
fn air_gapped_worker_runs_its_static_pod_from_image_archives() {
    let Some(bin) = cluster::binaries(VERSION) else {
        return;
    };
    if !testbed::available() {
        return;
    }
    let _swap = testbed::lock_swap().unwrap();
    let kernel_before = host_sysctls();
    let tb = worker(&bin).boot().unwrap();
    pin_sysctls(&tb);
    assert_no_route(&tb);
    testbed_containerd(&tb);
    let archive = support::images::sleeper(
        &tb.dir().join("image"),
        &["kubejoin.test/sleeper:1", "kubejoin.test/pause:1"],
    );
    tb.write(
        "/var/lib/kubejoin-images/sleeper.tar",
        std::fs::read(&archive).unwrap(),
        0o644,
    );
    tb.write(
        "/var/lib/kubejoin-images/README",
        "what these images are\n",
        0o644,
    );
    let cp = ControlPlane::start(&tb, VERSION, &bin);
    configure(&tb, &cp, "containerd", "");
    tb.write(
        "/etc/kubejoin/config.d/20-images.toml",
        "[host]\nsandbox_image = \"kubejoin.test/pause:1\"\nimage_archives = \"/var/lib/kubejoin-images\"\n",
        0o644,
    );
    assert!(!images(&tb).contains("kubejoin.test"), "{}", images(&tb));

    let plan = text(&tb.exec_ok(&["kubejoin", "plan"]));
    for line in [
        "would import /var/lib/kubejoin-images/sleeper.tar into containerd (kubejoin.test/sleeper:1, kubejoin.test/pause:1)",
        "would RestartUnit containerd.service replace",
    ] {
        assert!(plan.contains(line), "{line:?} not in:\n{plan}");
    }
    let out = tb.exec(&["kubejoin", "run"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("outcome:       joined"), "{report}");
    let config = String::from_utf8(tb.read("/etc/containerd/config.toml").unwrap()).unwrap();
    assert!(
        config.contains("    sandbox_image = \"kubejoin.test/pause:1\"\n"),
        "{config}"
    );
    let there = images(&tb);
    for name in ["kubejoin.test/pause:1", "kubejoin.test/sleeper:1"] {
        assert!(there.lines().any(|l| l == name), "{name} not in:\n{there}");
    }
    // The sandbox image is the archive's: no pull is ever tried.
    static_pod_runs(&tb, &cp, "kubejoin.test/sleeper:1", "Never");
    let containerd = tb.journal("containerd");
    assert!(!containerd.contains("PullImage"), "{containerd}");

    // Nothing more to import on the joined node.
    let again = text(&tb.exec_ok(&["kubejoin", "plan"]));
    assert!(!again.contains("import"), "{again}");
    assert_eq!(
        host_sysctls(),
        kernel_before,
        "the machine's sysctls changed"
    );
}

/// openssl's CA and a server certificate for `name`, in `dir`.
fn registry_certs(dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let script = format!(
        "set -e\ncd {dir}\nopenssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=registry-ca 2>/dev/null\nopenssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN={name} 2>/dev/null\nprintf 'subjectAltName=DNS:{name}\\n' > ext\nopenssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext 2>/dev/null\n",
        dir = dir.display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// `registry.py` in `mode` in the testbed's network namespace, dying with the test.
fn serve(tb: &Testbed, args: &[&str]) -> std::process::Child {
    let script = tb.dir().join("registry.py");
    std::fs::write(&script, include_str!("support/registry.py")).unwrap();
    let mut c = in_netns_of(tb.pid(), "/usr/bin/python3");
    c.arg(&script).args(args);
    c.stdout(std::process::Stdio::null());
    c.stderr(std::process::Stdio::inherit());
    c.spawn().unwrap()
}

fn listening(tb: &Testbed, port: u16) {
    let up = testbed::wait_for(Duration::from_secs(20), || {
        let out = tb.exec(&["ss", "-Htln", &format!("sport = :{port}")]);
        (!text(&out).trim().is_empty()).then_some(())
    });
    assert!(up.is_some(), "nothing listens on {port}");
}

#[test]
fn worker_behind_a_proxy_pulls_through_its_registry_mirror_with_its_own_ca() {
    let Some(bin) = cluster::binaries(VERSION) else {
        return;
    };
    if !testbed::available() {
        return;
    }
    let _swap = testbed::lock_swap().unwrap();
    let kernel_before = host_sysctls();
    let tb = worker(&bin).boot().unwrap();
    pin_sysctls(&tb);
    assert_no_route(&tb);
    testbed_containerd(&tb);

    // The "internet": one registry, reached through the proxy only, under its own CA.
    let layout_dir = tb.dir().join("image");
    support::images::sleeper(
        &layout_dir,
        &[
            "registry.kubejoin.test/sleeper:1",
            "registry.k8s.io/pause:3.10",
        ],
    );
    let certs = tb.dir().join("certs");
    registry_certs(&certs, "registry.kubejoin.test");
    let registry_log = tb.dir().join("registry.log");
    let proxy_log = tb.dir().join("proxy.log");
    let c = |p: &str| certs.join(p).display().to_string();
    let _registry = ChildGuard(serve(
        &tb,
        &[
            "registry",
            "5443",
            &layout_dir.join("img").display().to_string(),
            &c("server.pem"),
            &c("server.key"),
            &registry_log.display().to_string(),
            "sleeper",
            "robot:s3cret",
        ],
    ));
    let _proxy = ChildGuard(serve(
        &tb,
        &["proxy", "3128", "5443", &proxy_log.display().to_string()],
    ));
    listening(&tb, 5443);
    listening(&tb, 3128);
    tb.write(
        "/etc/kubejoin/registry-ca.pem",
        std::fs::read(certs.join("ca.pem")).unwrap(),
        0o644,
    );
    tb.write(
        "/etc/kubejoin/registry.credentials",
        "robot:s3cret\n",
        0o600,
    );

    let cp = ControlPlane::start(&tb, VERSION, &bin);
    configure(&tb, &cp, "containerd", "");
    tb.write(
        "/etc/kubejoin/config.d/20-restricted.toml",
        "[host]\nsandbox_image = \"registry.k8s.io/pause:3.10\"\n\n\
         [proxy]\nhttps = \"http://127.0.0.1:3128\"\n\n\
         [registries.\"registry.k8s.io\"]\nmirrors = [\"https://registry.kubejoin.test\"]\nca = \"/etc/kubejoin/registry-ca.pem\"\n\n\
         [registries.\"registry.kubejoin.test\"]\nca = \"/etc/kubejoin/registry-ca.pem\"\n\
         credentials_file = \"/etc/kubejoin/registry.credentials\"\n",
        0o644,
    );
    let plan = text(&tb.exec_ok(&["kubejoin", "plan"]));
    assert!(
        !plan.contains("s3cret") && !plan.contains("cm9ib3Q6czNjcmV0"),
        "{plan}"
    );
    for line in [
        "would write /etc/containerd/certs.d/registry.k8s.io/hosts.toml (the registry's mirrors and CA, for containerd)",
        "would write /etc/containerd/certs.d/registry.kubejoin.test/hosts.toml",
        "the sandbox image, and registries read from hosts.toml",
        "would write /var/lib/kubelet/config.json (registry credentials, for kubelet's image pulls; mode 0600, contents not shown)",
    ] {
        assert!(plan.contains(line), "{line:?} not in:\n{plan}");
    }
    let out = tb.exec(&["kubejoin", "run"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("outcome:       joined"), "{report}");
    let hosts = String::from_utf8(
        tb.read("/etc/containerd/certs.d/registry.k8s.io/hosts.toml")
            .unwrap(),
    )
    .unwrap();
    assert!(
        hosts.contains("[host.\"https://registry.kubejoin.test\"]\ncapabilities = [\"pull\", \"resolve\"]\nca = \"/etc/kubejoin/registry-ca.pem\"\n"),
        "{hosts}"
    );
    let mode = text(&tb.exec_ok(&["stat", "-c", "%a", "/var/lib/kubelet/config.json"]));
    assert_eq!(mode.trim(), "600");
    let images_before = images(&tb);
    assert!(!images_before.contains("pause"), "{images_before}");

    // The pod's image and the sandbox image are pulled: through the proxy, from the
    // registry (the sandbox image from the mirror of registry.k8s.io), trusting its CA.
    static_pod_runs(&tb, &cp, "registry.kubejoin.test/sleeper:1", "IfNotPresent");
    let carried = std::fs::read_to_string(&proxy_log).unwrap_or_default();
    let served = std::fs::read_to_string(&registry_log).unwrap_or_default();
    assert!(
        carried
            .lines()
            .all(|l| l == "CONNECT registry.kubejoin.test:443"),
        "the proxy carried more than the pulls:\n{carried}"
    );
    assert!(!carried.is_empty(), "nothing went through the proxy");
    // The mirror says which registry it stands for; containerd resolves a tag with HEAD;
    // the private repository is challenged, then read with kubelet's credentials.
    for request in [
        "HEAD /v2/pause/manifests/3.10?ns=registry.k8s.io",
        "401 HEAD /v2/sleeper/manifests/1",
        "HEAD /v2/sleeper/manifests/1",
    ] {
        assert!(
            served.lines().any(|l| l == request),
            "{request:?} not served:\n{served}"
        );
    }
    let there = images(&tb);
    for name in [
        "registry.k8s.io/pause:3.10",
        "registry.kubejoin.test/sleeper:1",
    ] {
        assert!(there.lines().any(|l| l == name), "{name} not in:\n{there}");
    }

    // Removing [registries] and [proxy] takes their files away with the next host
    // preparation (kubelet stopped, so the run prepares the host again).
    tb.write(
        "/etc/kubejoin/config.d/20-restricted.toml",
        "[host]\nsandbox_image = \"registry.k8s.io/pause:3.10\"\n",
        0o644,
    );
    tb.exec_ok(&["systemctl", "stop", "kubelet"]);
    let out = tb.exec(&["kubejoin", "run"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    for path in [
        "/etc/containerd/certs.d/registry.k8s.io/hosts.toml",
        "/etc/containerd/certs.d/registry.kubejoin.test/hosts.toml",
        "/etc/systemd/system/containerd.service.d/90-kubejoin-proxy.conf",
        "/etc/systemd/system/kubelet.service.d/90-kubejoin-proxy.conf",
        "/var/lib/kubelet/config.json",
    ] {
        assert!(tb.read(path).is_err(), "{path} is still there:\n{report}");
    }
    let pid = text(&tb.exec_ok(&[
        "systemctl",
        "show",
        "--value",
        "-p",
        "MainPID",
        "containerd",
    ]));
    let environ = tb.read(format!("/proc/{}/environ", pid.trim())).unwrap();
    assert!(
        !String::from_utf8_lossy(&environ).contains("HTTPS_PROXY"),
        "containerd still runs with the proxy"
    );
    assert_eq!(
        host_sysctls(),
        kernel_before,
        "the machine's sysctls changed"
    );
}

/// Kills a server when the test ends.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
