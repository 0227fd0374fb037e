//! A REAL control plane for the tests: etcd, kube-apiserver and kube-controller-manager
//! built by `scripts/real-kubernetes.sh`, run as processes of this test in a testbed's
//! network namespace (so that every byte stays on the testbed's own loopback, where its
//! kubelet finds the API server at 127.0.0.1:6443), with the seed's control-plane objects:
//! the cluster-info ConfigMap, the anonymous Role and RoleBinding for it, the
//! ClusterRoleBindings for bootstrappers and nodes, and a bootstrap token Secret.
//! PKI by openssl, in a directory of the test's own. Facts: `shared/real-kubernetes.md`.

#![allow(dead_code)] // each test binary uses a different part

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::testbed::{self, Testbed, wait_for};

/// Where a control plane runs: a network namespace, named by a process in it, whose
/// loopback it listens on, and a directory of the test's own for its files. A testbed
/// is one; a VM test's namespace (`support::vm::Netns`) another.
pub trait Place {
    fn pid(&self) -> i32;
    fn dir(&self) -> &Path;
}

impl Place for Testbed {
    fn pid(&self) -> i32 {
        Testbed::pid(self)
    }
    fn dir(&self) -> &Path {
        Testbed::dir(self)
    }
}

/// Where `scripts/real-kubernetes.sh` puts its binaries.
pub fn cache() -> PathBuf {
    std::env::var_os("KUBEJOIN_KUBE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kubejoin-kubernetes"))
}

/// The directory of a built version (`v1.20.2`, `v1.36.2`), or why the test cannot run:
/// outside CI a missing build skips the test with the reason; under `CI=true` it fails it
/// (CI builds them first).
pub fn binaries(version: &str) -> Option<PathBuf> {
    binaries_with(version, &[])
}

/// The binaries that make a whole cluster beside kube-apiserver and
/// kube-controller-manager, Kubernetes' own end-to-end tests and the program of their
/// agnhost image (`scripts/real-kubernetes.sh workloads`).
pub const WORKLOADS: [&str; 4] = ["kube-scheduler", "kube-proxy", "e2e.test", "agnhost"];

/// As [`binaries`], with `extra` binaries too.
pub fn binaries_with(version: &str, extra: &[&str]) -> Option<PathBuf> {
    let dir = cache().join(version);
    let etcd = cache().join("etcd/etcd");
    let missing = [
        "kube-apiserver",
        "kube-controller-manager",
        "kubelet",
        "kubectl",
    ]
    .iter()
    .chain(extra)
    .map(|b| dir.join(b))
    .chain([etcd])
    .find(|p| !p.exists());
    match missing {
        None => Some(dir),
        Some(p) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{} is missing under CI: run scripts/real-kubernetes.sh",
                p.display()
            )
        }
        Some(p) => {
            eprintln!(
                "SKIPPED (real Kubernetes): {} is missing; build it with scripts/real-kubernetes.sh",
                p.display()
            );
            None
        }
    }
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stderr(Stdio::null()));
}

/// The PKI of a cluster: CA, serving certificate, admin and controller-manager clients,
/// service-account keys.
fn make_pki(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    openssl(dir, &["genrsa", "-out", "ca.key", "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=kubernetes",
            "-days",
            "3650",
            "-out",
            "ca.crt",
        ],
    );
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,IP:10.0.2.2,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    )
    .unwrap();
    fs::write(
        dir.join("client.ext"),
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
    )
    .unwrap();
    for (name, subject, ext) in [
        ("apiserver", "/CN=kube-apiserver", "server.ext"),
        (
            "admin",
            "/O=system:masters/CN=kubernetes-admin",
            "client.ext",
        ),
        (
            "controller-manager",
            "/CN=system:kube-controller-manager",
            "client.ext",
        ),
        ("scheduler", "/CN=system:kube-scheduler", "client.ext"),
        // kube-apiserver's client certificate towards kubelets (logs, exec), as kubeadm's
        // apiserver-kubelet-client; kubelet asks the API server whether it may (webhook
        // authorization), and system:masters may.
        (
            "apiserver-kubelet-client",
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
            "client.ext",
        ),
    ] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(dir, &["genrsa", "-out", &key, "2048"]);
        openssl(
            dir,
            &["req", "-new", "-key", &key, "-subj", subject, "-out", &csr],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "3650",
                "-extfile",
                ext,
                "-out",
                &crt,
            ],
        );
    }
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"]);
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
    for (name, user) in [
        ("admin", "admin"),
        ("controller-manager", "controller-manager"),
        ("scheduler", "scheduler"),
    ] {
        fs::write(
            dir.join(format!("{name}.conf")),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: {d}/ca.crt\nusers:\n- name: {user}\n  user:\n    client-certificate: {d}/{name}.crt\n    client-key: {d}/{name}.key\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: {user}\ncurrent-context: local\n",
                d = dir.display()
            ),
        )
        .unwrap();
    }
}

/// What a control plane starts with.
pub struct Setup {
    /// The seed's objects: cluster-info, its RBAC, the bootstrappers' and nodes' bindings,
    /// a token. Without them the cluster is bare, as before `kubejoin cluster prepare`.
    pub seed: bool,
    /// kube-controller-manager runs the bootstrap signer and the token cleaner.
    pub signer: bool,
    /// kube-apiserver authenticates bootstrap tokens (`--enable-bootstrap-token-auth`).
    pub token_auth: bool,
    /// kube-apiserver listens on every address of the namespace, not only its loopback
    /// (its certificate also names 10.0.2.2).
    pub bind_any: bool,
    /// A whole cluster for workloads: kube-scheduler runs, kube-controller-manager
    /// allocates each Node a pod CIDR from [`CLUSTER_CIDR`], and OpenShift's fork keeps its
    /// service-CA publisher (pods with a service-account token need its ConfigMap).
    pub workloads: bool,
    /// kube-apiserver verifies kubelets' serving certificates with the cluster CA
    /// (`--kubelet-certificate-authority`): logs and exec need a serving certificate the
    /// cluster issued.
    pub verify_kubelets: bool,
}

/// The pods' addresses, as kubeadm's `--pod-network-cidr` sets them; each Node gets a /24.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The Services' addresses.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

impl Default for Setup {
    fn default() -> Self {
        Setup {
            seed: true,
            signer: true,
            token_auth: true,
            bind_any: false,
            workloads: false,
            verify_kubelets: false,
        }
    }
}

/// The control plane, running; dropped, it is killed.
pub struct ControlPlane {
    pub version: String,
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub token_id: String,
    pub token_secret: String,
    procs: Vec<(String, Child)>,
}

/// A command run in the testbed's network namespace only: this machine's files, the
/// testbed's loopback.
fn in_netns(tb: &impl Place, program: &Path) -> Command {
    in_netns_of(tb.pid(), program)
}

/// `program` in the network namespace of process `pid` only, dying with the thread that
/// starts it.
pub fn in_netns_of(pid: i32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("/usr/bin/nsenter");
    c.arg("-t")
        .arg(pid.to_string())
        .arg("-n")
        .arg("--")
        .arg(program);
    c.stdin(Stdio::null());
    super::dies_with_parent(&mut c);
    c
}

/// `n` random characters of a bootstrap token's alphabet.
fn random_lower(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    super::random_bytes::<16>()[..n]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager of `version` on the
    /// testbed's loopback and applies the seed's objects.
    pub fn start(tb: &impl Place, version: &str, bin: &Path) -> ControlPlane {
        Self::start_with(tb, version, bin, Setup::default())
    }

    /// As [`ControlPlane::start`], with the seed's objects and the bootstrap signer as
    /// `setup` says.
    pub fn start_with(tb: &impl Place, version: &str, bin: &Path, setup: Setup) -> ControlPlane {
        let dir = tb.dir().join("control-plane");
        let pki = dir.join("pki");
        make_pki(&pki);
        let mut cp = ControlPlane {
            version: version.into(),
            bin: bin.to_path_buf(),
            dir: dir.clone(),
            token_id: random_lower(6),
            token_secret: random_lower(16),
            procs: Vec::new(),
        };
        let p = |f: &str| pki.join(f).display().to_string();
        let mut etcd = in_netns(tb, &cache().join("etcd/etcd"));
        etcd.args([
            "--data-dir",
            &dir.join("etcd").display().to_string(),
            "--listen-client-urls=http://127.0.0.1:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
        ]);
        cp.spawn("etcd", etcd);
        let mut apiserver = in_netns(tb, &bin.join("kube-apiserver"));
        apiserver.arg(if setup.bind_any {
            "--bind-address=0.0.0.0"
        } else {
            "--bind-address=127.0.0.1"
        });
        apiserver.args([
            "--advertise-address=127.0.0.1",
            "--secure-port=6443",
            "--etcd-servers=http://127.0.0.1:2379",
            &format!("--client-ca-file={}", p("ca.crt")),
            &format!("--tls-cert-file={}", p("apiserver.crt")),
            &format!("--tls-private-key-file={}", p("apiserver.key")),
            &format!("--enable-bootstrap-token-auth={}", setup.token_auth),
            "--authorization-mode=Node,RBAC",
            "--anonymous-auth=true",
            &format!("--service-account-key-file={}", p("sa.pub")),
            &format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--endpoint-reconciler-type=none",
            "--enable-admission-plugins=NodeRestriction",
            &format!(
                "--kubelet-client-certificate={}",
                p("apiserver-kubelet-client.crt")
            ),
            &format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
            // As kubeadm sets it: the Node's address first (the default tries its
            // hostname first, which nothing here resolves).
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        ]);
        if version.starts_with("v1.20") {
            apiserver.arg("--insecure-port=0");
        }
        if setup.verify_kubelets {
            apiserver.arg(format!("--kubelet-certificate-authority={}", p("ca.crt")));
        }
        cp.spawn("kube-apiserver", apiserver);
        let mut controllers = if setup.signer {
            "*,bootstrapsigner,tokencleaner".to_string()
        } else {
            "*".to_string()
        };
        if !version.starts_with("v1.20") && !setup.workloads {
            // OpenShift's fork adds a controller under '*' that publishes a ConfigMap in
            // every namespace; off where configmaps must match upstream's.
            controllers.push_str(",-service-ca-certificate-publisher-controller");
        }
        let mut cm = in_netns(tb, &bin.join("kube-controller-manager"));
        cm.args([
            &format!("--kubeconfig={}", p("controller-manager.conf")),
            &format!("--controllers={controllers}"),
            &format!("--cluster-signing-cert-file={}", p("ca.crt")),
            &format!("--cluster-signing-key-file={}", p("ca.key")),
            &format!("--root-ca-file={}", p("ca.crt")),
            &format!("--service-account-private-key-file={}", p("sa.key")),
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=10257",
        ]);
        if version.starts_with("v1.20") {
            cm.arg("--port=0");
        }
        if setup.workloads {
            cm.args([
                "--allocate-node-cidrs=true",
                &format!("--cluster-cidr={CLUSTER_CIDR}"),
                &format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            ]);
        }
        cp.spawn("kube-controller-manager", cm);
        if setup.workloads {
            let mut scheduler = in_netns(tb, &bin.join("kube-scheduler"));
            scheduler.args([
                &format!("--kubeconfig={}", p("scheduler.conf")),
                &format!("--authentication-kubeconfig={}", p("scheduler.conf")),
                &format!("--authorization-kubeconfig={}", p("scheduler.conf")),
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=10259",
            ]);
            cp.spawn("kube-scheduler", scheduler);
        }

        let healthy = wait_for(Duration::from_secs(90), || {
            let out = cp.kubectl_out(tb, &["get", "--raw", "/readyz"]);
            (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok")
                .then_some(())
        });
        assert!(
            healthy.is_some(),
            "kube-apiserver did not become ready:\n{}",
            cp.log("kube-apiserver")
        );
        // kubectl create validates against the OpenAPI document: wait until it is served.
        let openapi = wait_for(Duration::from_secs(60), || {
            cp.kubectl_out(tb, &["get", "--raw", "/openapi/v2"])
                .status
                .success()
                .then_some(())
        });
        assert!(
            openapi.is_some(),
            "no /openapi/v2:\n{}",
            cp.log("kube-apiserver")
        );
        if setup.seed {
            cp.apply_seed(tb);
        }
        cp
    }

    /// kube-proxy for the worker `node` whose network namespace `tb` is: what a cluster's
    /// kube-proxy DaemonSet runs there, as a process of this machine's files in that
    /// namespace instead of a pod (no image of it can be had here), with the admin's
    /// credentials and the API server at `server` (as the worker reaches it). iptables
    /// mode; the conntrack table's size and timeouts, which are kernel-wide, are left as
    /// they are.
    pub fn start_kube_proxy(&mut self, tb: &impl Place, node: &str, server: &str) {
        let kubeconfig = self.dir.join(format!("kube-proxy-{node}.conf"));
        fs::write(&kubeconfig, self.admin_conf_embedded(server)).unwrap();
        let mut proxy = in_netns(tb, &self.bin.join("kube-proxy"));
        proxy.args([
            &format!("--kubeconfig={}", kubeconfig.display()),
            &format!("--hostname-override={node}"),
            &format!("--cluster-cidr={CLUSTER_CIDR}"),
            "--proxy-mode=iptables",
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            "--metrics-bind-address=127.0.0.1:10249",
            "--healthz-bind-address=127.0.0.1:10256",
        ]);
        self.spawn(&format!("kube-proxy-{node}"), proxy);
    }

    /// The admin's kubeconfig with the API server at `server` and everything in it (no
    /// paths of this machine): for a program in a VM, e.g. its kube-proxy.
    pub fn admin_conf_embedded(&self, server: &str) -> String {
        use base64::Engine;
        let b64 = |f: &str| {
            base64::engine::general_purpose::STANDARD
                .encode(fs::read(self.dir.join("pki").join(f)).unwrap())
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: admin}}\ncurrent-context: c\n",
            b64("ca.crt"),
            b64("admin.crt"),
            b64("admin.key")
        )
    }

    /// The cluster's DNS in CoreDNS's place (`dns.py`, which says what it answers): a
    /// server on `address`:53 of `place`'s namespace, and the Service a cluster has in
    /// front of CoreDNS, kube-system/kube-dns at 10.96.0.10, its endpoint `address` (a
    /// Service without a selector, and its Endpoints).
    pub fn start_dns(&mut self, place: &impl Place, address: &str) {
        let pki = self.dir.join("pki");
        let mut dns = in_netns(place, Path::new("/usr/bin/python3"));
        dns.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dns.py"))
            .args([address, "53", "cluster.local", "https://127.0.0.1:6443"])
            .args([
                pki.join("ca.crt"),
                pki.join("admin.crt"),
                pki.join("admin.key"),
            ]);
        self.spawn("dns", dns);
        let manifest = self.dir.join("kube-dns.yaml");
        let ports = "  - {name: dns, port: 53, protocol: UDP}\n  - {name: dns-tcp, port: 53, protocol: TCP}\n";
        fs::write(
            &manifest,
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: kube-dns\n  namespace: kube-system\n  labels: {{k8s-app: kube-dns}}\nspec:\n  clusterIP: 10.96.0.10\n  ports:\n{ports}---\n\
                 apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: kube-dns\n  namespace: kube-system\nsubsets:\n- addresses:\n  - ip: {address}\n  ports:\n{ports}"
            ),
        )
        .unwrap();
        let out = self.kubectl_out(place, &["apply", "-f", &manifest.display().to_string()]);
        assert!(out.status.success(), "{}", super::text(&out));
    }

    /// kubejoin, as a process of this machine (its files) on the testbed's loopback, with
    /// the admin kubeconfig: where an operator runs `kubejoin cluster` and `kubejoin token`.
    pub fn kubejoin(&self, tb: &impl Place, args: &[&str]) -> Output {
        self.kubejoin_as(tb, &self.admin_conf(), args)
    }

    /// kubejoin as [`ControlPlane::kubejoin`], with another kubeconfig.
    pub fn kubejoin_as(&self, tb: &impl Place, kubeconfig: &Path, args: &[&str]) -> Output {
        in_netns(tb, Path::new(env!("CARGO_BIN_EXE_kubejoin")))
            .args(args)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .output()
            .unwrap()
    }

    pub fn admin_conf(&self) -> PathBuf {
        self.dir.join("pki/admin.conf")
    }

    /// kubeadm's kubelet configuration, as `kubeadm init` of this version leaves it: the
    /// ConfigMap (`kubelet-config`, `kubelet-config-1.20` for v1.20) holding kubeadm's
    /// KubeletConfiguration (`tests/fixtures/kubeadm/`, clusterDNS 10.96.0.10), and the
    /// Role and RoleBinding that let kubeadm's token group and nodes read it. Returns the
    /// ConfigMap's name.
    pub fn apply_kubeadm_kubelet_config(&self, tb: &impl Place) -> String {
        let (name, file) = if self.version.starts_with("v1.20") {
            ("kubelet-config-1.20", "kubelet-config-v1.20.yaml")
        } else {
            ("kubelet-config", "kubelet-config-v1.36.yaml")
        };
        let fixture = format!(
            "{}/tests/fixtures/kubeadm/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let role = format!("kubeadm:{name}");
        for args in [
            vec![
                "-n",
                "kube-system",
                "create",
                "configmap",
                name,
                &format!("--from-file=kubelet={fixture}"),
            ],
            vec![
                "-n",
                "kube-system",
                "create",
                "role",
                &role,
                "--verb=get",
                "--resource=configmaps",
                &format!("--resource-name={name}"),
            ],
            vec![
                "-n",
                "kube-system",
                "create",
                "rolebinding",
                &role,
                &format!("--role={role}"),
                "--group=system:bootstrappers:kubeadm:default-node-token",
                "--group=system:nodes",
            ],
        ] {
            let out = self.kubectl_out(tb, &args);
            assert!(
                out.status.success(),
                "kubectl {args:?}: {}",
                super::text(&out)
            );
        }
        name.to_string()
    }

    /// The cluster's DNS Service as CoreDNS installs it: kube-system/kube-dns at
    /// 10.96.0.10 (no pods behind it).
    pub fn create_dns_service(&self, tb: &impl Place) {
        let out = self.kubectl_out(
            tb,
            &[
                "-n",
                "kube-system",
                "create",
                "service",
                "clusterip",
                "kube-dns",
                "--clusterip=10.96.0.10",
                "--tcp=53:53",
            ],
        );
        assert!(out.status.success(), "{}", super::text(&out));
    }

    /// The configuration kubelet runs with, from its own `/configz` on the testbed's
    /// loopback, asked with the admin's client certificate (kubelet authenticates it with
    /// the cluster CA and asks the API server whether it may).
    pub fn configz(&self, tb: &impl Place) -> serde_json::Value {
        let pki = self.dir.join("pki");
        let out = in_netns(tb, Path::new("/usr/bin/curl"))
            .args(["-sSfk", "--max-time", "10", "--cert"])
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .arg("https://127.0.0.1:10250/configz")
            .output()
            .unwrap();
        assert!(out.status.success(), "/configz: {}", super::text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["kubeletconfig"].clone()
    }

    /// Starts one of its processes, its output in `<name>.log`.
    fn spawn(&mut self, name: &str, mut cmd: Command) {
        let log = fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        self.procs.push((name.to_string(), child));
    }

    /// The seed's control-plane objects.
    fn apply_seed(&self, tb: &impl Place) {
        use base64::Engine;
        let ca = fs::read(self.dir.join("pki/ca.crt")).unwrap();
        let ca64 = base64::engine::general_purpose::STANDARD.encode(&ca);
        let kubeconfig = format!(
            "apiVersion: v1\n    clusters:\n    - cluster:\n        certificate-authority-data: {ca64}\n        server: https://127.0.0.1:6443\n      name: \"\"\n    contexts: null\n    current-context: \"\"\n    kind: Config\n    preferences: {{}}\n    users: null\n"
        );
        let objects = format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: cluster-info
  namespace: kube-public
data:
  kubeconfig: |
    {kubeconfig}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: kubeadm:bootstrap-signer-clusterinfo
  namespace: kube-public
rules:
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [cluster-info]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: kubeadm:bootstrap-signer-clusterinfo
  namespace: kube-public
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: kubeadm:bootstrap-signer-clusterinfo
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: system:anonymous
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kubeadm:kubelet-bootstrap
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:node-bootstrapper
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: system:bootstrappers
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kubeadm:node-autoapprove-bootstrap
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:certificates.k8s.io:certificatesigningrequests:nodeclient
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: system:bootstrappers
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kubeadm:node-autoapprove-certificate-rotation
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:certificates.k8s.io:certificatesigningrequests:selfnodeclient
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: system:nodes
---
apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-token-{id}
  namespace: kube-system
type: bootstrap.kubernetes.io/token
stringData:
  token-id: "{id}"
  token-secret: "{secret}"
  usage-bootstrap-authentication: "true"
  usage-bootstrap-signing: "true"
  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token
"#,
            kubeconfig = kubeconfig.trim_end(),
            id = self.token_id,
            secret = self.token_secret,
        );
        let file = self.dir.join("seed.yaml");
        fs::write(&file, objects).unwrap();
        let out = self.kubectl_out(tb, &["create", "-f", &file.display().to_string()]);
        assert!(
            out.status.success(),
            "kubectl create: {}",
            super::text(&out)
        );
    }

    /// `kubectl` with the admin credentials, on the testbed's loopback.
    pub fn kubectl_out(&self, tb: &impl Place, args: &[&str]) -> Output {
        in_netns(tb, &self.bin.join("kubectl"))
            .arg(format!(
                "--kubeconfig={}",
                self.dir.join("pki/admin.conf").display()
            ))
            .args(args)
            .output()
            .unwrap()
    }

    /// A kubeconfig `token-NAME.conf` for the cluster's server and CA with `token` as its
    /// bearer credentials (a bootstrap token, a ServiceAccount's).
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let conf = self.dir.join(format!("token-{name}.conf"));
        fs::write(
            &conf,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: pki/ca.crt\nusers:\n- name: t\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: t}}\ncurrent-context: c\n"
            ),
        )
        .unwrap();
        conf
    }

    /// `kubectl` as a bearer token (a bootstrap token) instead of the admin, with
    /// [`ControlPlane::token_kubeconfig`] of `name`.
    pub fn kubectl_as_token(
        &self,
        tb: &impl Place,
        name: &str,
        token: &str,
        args: &[&str],
    ) -> Output {
        let conf = self.token_kubeconfig(name, token);
        in_netns(tb, &self.bin.join("kubectl"))
            .arg(format!("--kubeconfig={}", conf.display()))
            .args(args)
            .output()
            .unwrap()
    }

    /// Whether the API server refuses `token` (401), waiting up to 30 s: it caches a
    /// token's authentication for 10 s, so a token deleted a moment ago works that long.
    pub fn refuses_token_within_30s(&self, tb: &impl Place, token: &str) -> bool {
        super::testbed::wait_for(Duration::from_secs(30), || {
            let out = self.kubectl_as_token(tb, "probe", token, &["get", "--raw", "/api"]);
            super::text(&out).contains("Unauthorized").then_some(())
        })
        .is_some()
    }

    /// A field of the Node `node`, by kubectl's jsonpath, trimmed (empty when there is no
    /// such Node or field).
    pub fn node_field(&self, tb: &impl Place, node: &str, jsonpath: &str) -> String {
        let out = self.kubectl_out(
            tb,
            &["get", "node", node, "-o", &format!("jsonpath={jsonpath}")],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The Node's Ready condition's status (`True`, `False`, `Unknown`, or empty).
    pub fn node_ready(&self, tb: &impl Place, node: &str) -> String {
        self.node_field(
            tb,
            node,
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        )
    }

    /// `kubectl run NAME` of `image` in namespace default, never restarted, for the Node
    /// `node` (a nodeSelector: the scheduler still places it), with `command` if any.
    pub fn run_pod_on(
        &self,
        tb: &impl Place,
        name: &str,
        image: &str,
        node: &str,
        command: &[&str],
    ) -> Output {
        let overrides = format!(
            r#"{{"apiVersion":"v1","spec":{{"nodeSelector":{{"kubernetes.io/hostname":"{node}"}}}}}}"#
        );
        let image = format!("--image={image}");
        let overrides = format!("--overrides={overrides}");
        let mut args = vec!["run", name, &image, "--restart=Never", &overrides];
        if !command.is_empty() {
            args.push("--");
            args.extend(command);
        }
        self.kubectl_out(tb, &args)
    }

    /// A field of a pod in namespace default, by kubectl's jsonpath (empty when there
    /// is no such pod).
    pub fn pod_field(&self, tb: &impl Place, pod: &str, jsonpath: &str) -> String {
        let out = self.kubectl_out(
            tb,
            &[
                "get",
                "pod",
                "-n",
                "default",
                pod,
                "-o",
                &format!("jsonpath={jsonpath}"),
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl ... -o json`, parsed; fails the test unless kubectl succeeds.
    pub fn kubectl_json(&self, tb: &impl Place, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl_out(tb, &all);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            super::text(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// kubeadm's pin of the cluster CA.
    pub fn ca_pin(&self) -> String {
        let out = run(Command::new("sh").arg("-c").arg(format!(
            "openssl x509 -pubkey -in {}/pki/ca.crt | openssl pkey -pubin -outform der | sha256sum",
            self.dir.display()
        )));
        format!(
            "sha256:{}",
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap()
        )
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        fs::read(self.dir.join("pki/ca.crt")).unwrap()
    }

    pub fn token(&self) -> String {
        format!("{}.{}", self.token_id, self.token_secret)
    }

    pub fn log(&self, name: &str) -> String {
        let text = fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for (_, child) in self.procs.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// A worker for the real kubelet.

/// The sysctls kubelet's container manager sets, with its values.
pub const KERNEL: [(&str, &str); 6] = [
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

pub fn host_sysctls() -> Vec<String> {
    KERNEL
        .iter()
        .map(|(k, _)| std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap_or_default())
        .collect()
}

/// A worker: docker.io and containerd running on tmpfs (their overlay snapshotters
/// cannot stack on the overlay root), kubejoin and the real kubelet installed.
pub fn worker(bin: &std::path::Path) -> testbed::Builder {
    let mut b = Testbed::builder()
        .with_docker(true)
        .boot_timeout(Duration::from_secs(120))
        .with_file(
            "/usr/bin/kubejoin",
            // KUBEJOIN_TEST_BIN: another build to measure, e.g. target/release/kubejoin.
            std::fs::read(
                std::env::var_os("KUBEJOIN_TEST_BIN")
                    .unwrap_or_else(|| env!("CARGO_BIN_EXE_kubejoin").into()),
            )
            .unwrap(),
            0o755,
        )
        .with_file(
            "/usr/local/bin/kubelet",
            std::fs::read(bin.join("kubelet")).unwrap(),
            0o755,
        );
    for (unit, dir, service) in [
        (
            "var-lib-containerd.mount",
            "/var/lib/containerd",
            "containerd.service",
        ),
        ("var-lib-docker.mount", "/var/lib/docker", "docker.service"),
    ] {
        b = b
            .with_file(
                format!("/etc/systemd/system/{unit}"),
                format!("[Mount]\nWhat=tmpfs\nWhere={dir}\nType=tmpfs\n"),
                0o644,
            )
            .with_file(
                format!("/etc/systemd/system/{service}.d/testbed.conf"),
                format!("[Unit]\nRequiresMountsFor={dir}\n"),
                0o644,
            );
    }
    b
}

/// containerd as a testbed needs it for pods: runc may not lower oom_score_adj here (the
/// machine lacks CAP_SYS_RESOURCE). Everything else about images is kubejoin's.
pub fn testbed_containerd(tb: &Testbed) {
    let out = tb.sh(
        "set -e\nsed -i 's|^  \\[plugins.\"io.containerd.grpc.v1.cri\"\\]$|&\\n    restrict_oom_score_adj = true|' /etc/containerd/config.toml\ngrep -q restrict_oom_score_adj /etc/containerd/config.toml\nsystemctl restart containerd\n",
    );
    assert!(out.status.success(), "{}", super::text(&out));
}

/// Binds read-only files with kubelet's values over the kernel-wide sysctls it writes.
pub fn pin_sysctls(tb: &Testbed) {
    let mut script = String::from("set -e; mkdir -p /run/sysctl-pin\n");
    for (key, value) in KERNEL {
        let file = format!("/run/sysctl-pin/{}", key.replace('/', "."));
        script.push_str(&format!(
            "echo {value} > {file}; mount --bind {file} /proc/sys/{key}; mount -o remount,bind,ro /proc/sys/{key}\n"
        ));
    }
    let out = tb.sh(&script);
    assert!(out.status.success(), "{}", super::text(&out));
}

/// kubejoin's configuration: only the cluster keys and `container_runtime`, plus
/// `swap = false` and `kernel = false`, which keep host preparation off this machine's
/// swap and kernel modules; `extra` is appended.
pub fn configure(tb: &Testbed, cp: &ControlPlane, runtime: &str, extra: &str) {
    tb.write("/etc/kubejoin/token", format!("{}\n", cp.token()), 0o600);
    tb.write(
        "/etc/kubejoin/config.toml",
        format!(
            "[host]\ncontainer_runtime = \"{runtime}\"\nswap = false\nkernel = false\n\n[cluster]\nserver = \"https://127.0.0.1:6443\"\nca_cert_hashes = [\"{}\"]\n{extra}",
            cp.ca_pin()
        ),
        0o600,
    );
}
