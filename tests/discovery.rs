//! `kubejoin discover` as a process, against the API server double on loopback: the
//! good path and every failure the discovery issue lists, with exit code, message, and
//! no kubeconfig written on failure.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apiserver_double::{ApiServer, Builder, Fault, Pki, REAL_TOKEN_ID, REAL_TOKEN_SECRET};

const EXIT_TRANSIENT: i32 = 1;
const EXIT_CONFIG: i32 = 2;
const EXIT_TRUST: i32 = 3;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// A scratch directory with a private token file, removed when dropped.
struct Node {
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Node {
    fn new() -> Node {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("kubejoin-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let node = Node { dir };
        node.write_private("token", &format!("{REAL_TOKEN_ID}.{REAL_TOKEN_SECRET}\n"));
        // An empty configuration: the flags say everything.
        node.write_private("etc/kubejoin/config.toml", "");
        node
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write_private(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    fn kubeconfig(&self) -> PathBuf {
        self.path("var/lib/kubelet/bootstrap-kubeconfig")
    }

    /// `kubejoin discover` with the node's configuration file,
    /// the token file, and `extra` flags.
    fn discover(&self, extra: &[&str]) -> Run {
        let token = self.path("token");
        let config = self.path("etc/kubejoin/config.toml");
        let kubeconfig = self.kubeconfig();
        let mut args = vec![
            "discover",
            "--config",
            config.to_str().unwrap(),
            "--token-file",
            token.to_str().unwrap(),
            "--write-kubeconfig",
            kubeconfig.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args, &[], None)
    }

    /// [`Node::discover_pinned`] with `env` set.
    fn discover_pinned_env(&self, api: &ApiServer, env: &[(&str, &str)]) -> Run {
        let (url, pin) = (api.url(), pin());
        let token = self.path("token");
        let config = self.path("etc/kubejoin/config.toml");
        let kubeconfig = self.kubeconfig();
        let args = [
            "discover",
            "--config",
            config.to_str().unwrap(),
            "--token-file",
            token.to_str().unwrap(),
            "--write-kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--server",
            &url,
            "--ca-cert-hash",
            &pin,
        ];
        run(&args, env, None)
    }
}

impl Node {
    /// kubeadm's flow: cluster-info fetched a second time over TLS pinned to the CA.
    fn kubeadms_two_fetches(&self) -> &Self {
        self.write_private(
            "etc/kubejoin/config.toml",
            "[cluster]\npinned_refetch = true\n",
        );
        self
    }

    /// `discover` against `api` with the real cluster's pin, and `extra` flags.
    fn discover_pinned(&self, api: &ApiServer, extra: &[&str]) -> Run {
        let (url, pin) = (api.url(), pin());
        let mut args = vec!["--server", &url, "--ca-cert-hash", &pin];
        args.extend_from_slice(extra);
        self.discover(&args)
    }
}

fn run(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubejoin"));
    cmd.args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("kubejoin runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    };
    // Whatever happened, the secret is never printed.
    assert!(
        !run.stdout.contains(REAL_TOKEN_SECRET) && !run.stderr.contains(REAL_TOKEN_SECRET),
        "the token secret leaked:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run
}

fn pin() -> String {
    apiserver_double::real_ca_pin()
}

fn double() -> Builder {
    ApiServer::builder().token(REAL_TOKEN_ID, REAL_TOKEN_SECRET)
}

fn assert_exit(run: &Run, code: i32, needles: &[&str]) {
    assert_eq!(
        run.code, code,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    for n in needles {
        assert!(
            run.stderr.contains(n) || run.stdout.contains(n),
            "{n:?} not in output:\nstdout:\n{}\nstderr:\n{}",
            run.stdout,
            run.stderr
        );
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn discovers_and_writes_the_bootstrap_kubeconfig() {
    let api = double().start().unwrap();
    let node = Node::new();
    let url = api.url();
    let pin = pin();
    let r = node.discover(&["--server", &url, "--ca-cert-hash", &pin]);
    assert_exit(
        &r,
        0,
        &[&url, &pin, "signature verified", "(written, mode 0600)"],
    );

    let written = std::fs::read_to_string(node.kubeconfig()).unwrap();
    assert_eq!(mode(&node.kubeconfig()), 0o600);
    assert!(written.contains(&format!("token: {REAL_TOKEN_ID}.{REAL_TOKEN_SECRET}\n")));
    assert!(written.contains(&format!("server: {url}\n")));
    assert!(written.contains("current-context: bootstrap\n"));
    assert!(written.contains("user: kubelet-bootstrap\n"));

    // One anonymous request over HTTP/2: the chain the server presented is verified
    // against the CA the signature and the pin established (kubeadm's second, pinned
    // fetch is `pinned_refetch = true`).
    let requests = api.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    for req in &requests {
        assert_eq!(
            req.authorization, None,
            "discovery must not send credentials"
        );
        assert_eq!(req.path, apiserver_double::CLUSTER_INFO_PATH);
        assert_eq!(req.version, "HTTP/2.0");
    }

    // Again: same result, the file is not rewritten.
    let before = std::fs::metadata(node.kubeconfig())
        .unwrap()
        .modified()
        .unwrap();
    let again = node.discover(&["--server", &url, "--ca-cert-hash", &pin]);
    assert_exit(&again, 0, &["(unchanged, mode 0600)"]);
    let after = std::fs::metadata(node.kubeconfig())
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn json_output() {
    let api = double().start().unwrap();
    let node = Node::new();
    let pin = pin();
    let r = node.discover(&[
        "--server",
        &api.url(),
        "--ca-cert-hash",
        &pin,
        "--output",
        "json",
    ]);
    assert_exit(&r, 0, &[]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("stdout is JSON");
    assert_eq!(v["server"], api.url());
    assert_eq!(v["matched_pin"], pin);
    assert_eq!(v["pinned"], true);
    assert_eq!(v["ca"][0]["subject_cn"], "kubernetes");
    assert_eq!(v["ca"][0]["not_after"], "2036-11-26T05:26:29Z");
    assert_eq!(v["kubeconfig_written"]["changed"], true);
}

#[test]
fn waits_for_the_bootstrap_signer() {
    let api = double()
        .sign_after(Duration::from_millis(1500))
        .start()
        .unwrap();
    let node = Node::new();
    let r = node.discover_pinned(&api, &["--timeout", "30s"]);
    assert_exit(&r, 0, &["signature verified"]);
    assert!(api.requests().len() > 2, "it polled");
    assert!(
        r.stderr.contains("no signature for token id 0ve35r"),
        "{}",
        r.stderr
    );
    // The tries share a connection (HTTP/2, no new handshake): the chain it presented
    // still proves the certificate, without a second fetch.
    assert!(
        r.stderr.contains("presented is issued by the cluster CA")
            && !r.stderr.contains("was not kept"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("again over TLS pinned"), "{}", r.stderr);
}

/// The API server knows the token (it authenticates it) but its Secret may not sign: the
/// signer may yet sign, so discovery waits, until its timeout.
#[test]
fn a_signature_that_never_comes_times_out_with_the_seed_fix() {
    let mut may_not_sign =
        apiserver_double::secret::BootstrapSecret::new(REAL_TOKEN_ID, REAL_TOKEN_SECRET);
    may_not_sign.data.remove("usage-bootstrap-signing");
    let api = ApiServer::builder()
        .token("c46dzr", "hk5w0sqna1wokaou")
        .secret(may_not_sign)
        .start()
        .unwrap();
    let node = Node::new();
    let r = node.discover_pinned(&api, &["--timeout", "2s"]);
    assert_exit(
        &r,
        EXIT_TRANSIENT,
        &[
            "no signature for token id 0ve35r",
            "signed for token ids: c46dzr",
            "--controllers=*,bootstrapsigner,tokencleaner",
            "usage-bootstrap-signing",
            "bootstrap-token-0ve35r",
        ],
    );
    assert!(
        r.stderr
            .contains("the API server accepts token id 0ve35r: waiting for the bootstrap signer"),
        "{}",
        r.stderr
    );
    assert!(!node.kubeconfig().exists());
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
}

/// A token the API server does not know (mistyped, expired, deleted: its signature is gone
/// too) ends discovery at once, as needing a person: systemd does not restart kubejoin
/// for it. The token went to the API server once, to /version, over TLS trusting only
/// the CA the pin vouches for.
#[test]
fn a_token_the_cluster_does_not_know_ends_discovery_at_once() {
    let api = ApiServer::builder()
        .token("c46dzr", "hk5w0sqna1wokaou")
        .start()
        .unwrap();
    let node = Node::new();
    let r = node.discover_pinned(&api, &["--timeout", "60s"]);
    assert_exit(
        &r,
        EXIT_CONFIG,
        &[
            "cluster-info has no signature for token id 0ve35r, and the API server at",
            "refuses the token (401 Unauthorized): it is unknown, expired or deleted",
            "kubejoin token create",
            "bootstrap-token-0ve35r",
            "--enable-bootstrap-token-auth=true",
        ],
    );
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
    let with_token: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|q| q.authorization.is_some())
        .map(|q| q.path)
        .collect();
    assert_eq!(with_token, ["/version"]);
    assert!(!r.stderr.contains(REAL_TOKEN_SECRET) && !r.stdout.contains(REAL_TOKEN_SECRET));
}

/// Without a pin nothing vouches for the server before the signature does: the token is
/// never sent to ask about it, and discovery waits for the signature until its timeout.
#[test]
fn without_a_pin_the_token_is_never_sent_to_ask_about_it() {
    let api = ApiServer::builder()
        .token("c46dzr", "hk5w0sqna1wokaou")
        .start()
        .unwrap();
    let node = Node::new();
    let r = node.discover(&[
        "--server",
        &api.url(),
        "--unsafe-skip-ca-verification",
        "--timeout",
        "2s",
    ]);
    assert_exit(&r, EXIT_TRANSIENT, &["no signature for token id 0ve35r"]);
    assert!(api.requests().iter().all(|q| q.authorization.is_none()));
}

#[test]
fn a_forged_signature_is_a_trust_failure_and_not_retried() {
    let api = double().forge_signatures().start().unwrap();
    let node = Node::new();
    let r = node.discover_pinned(&api, &[]);
    assert_exit(
        &r,
        EXIT_TRUST,
        &[
            "jws-kubeconfig-0ve35r does not verify",
            "token-secret",
            "does not retry",
        ],
    );
    assert_eq!(api.requests().len(), 1);
    assert!(!node.kubeconfig().exists());
}

#[test]
fn a_wrong_pin_is_a_trust_failure_that_prints_the_pin_seen() {
    let api = double().start().unwrap();
    let node = Node::new();
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let r = node.discover(&["--server", &api.url(), "--ca-cert-hash", &wrong]);
    assert_exit(
        &r,
        EXIT_TRUST,
        &["matches none of the configured pins", &pin(), &wrong],
    );
    assert_eq!(api.requests().len(), 1);
    assert!(!node.kubeconfig().exists());
}

#[test]
fn an_impostor_with_the_token_but_another_ca_fails_the_pin() {
    // Someone who learned the token can sign their own cluster-info: the pin stops them.
    let api = double().pki(Pki::impostor()).start().unwrap();
    let node = Node::new();
    let r = node.discover_pinned(&api, &[]);
    assert_exit(
        &r,
        EXIT_TRUST,
        &["matches none of the configured pins", "CN=kubernetes"],
    );
    assert!(!node.kubeconfig().exists());
}

#[test]
fn another_certificate_on_the_pinned_fetch_is_a_trust_failure() {
    let api = double().later_pki(Pki::impostor()).start().unwrap();
    let node = Node::new();
    let r = node
        .kubeadms_two_fetches()
        .discover_pinned(&api, &["--timeout", "10s"]);
    assert_exit(&r, EXIT_TRUST, &["not signed by the pinned cluster CA"]);
    assert!(!node.kubeconfig().exists());
}

#[test]
fn a_certificate_for_another_name_on_the_pinned_fetch_is_a_trust_failure() {
    let api = double().later_pki(Pki::wrong_name()).start().unwrap();
    let node = Node::new();
    let r = node
        .kubeadms_two_fetches()
        .discover_pinned(&api, &["--timeout", "10s"]);
    assert_exit(&r, EXIT_TRUST, &["not valid for this host name or address"]);
    assert!(!node.kubeconfig().exists());
}

#[test]
fn a_healthy_discovery_is_one_request_and_kubeadms_flow_two() {
    let api = double().start().unwrap();
    let one = Node::new();
    let r = one.discover_pinned(&api, &[]);
    assert_exit(
        &r,
        0,
        &[
            "the certificate https://127.0.0.1:",
            "presented is issued by the cluster CA, for this server, and valid now",
        ],
    );
    assert_eq!(api.requests().len(), 1);
    let two = Node::new();
    let r = two.kubeadms_two_fetches().discover_pinned(&api, &[]);
    assert_exit(
        &r,
        0,
        &["fetching cluster-info again over TLS pinned to the cluster CA"],
    );
    let requests = api.requests();
    assert_eq!(requests.len(), 3);
    // Each on a connection of its own: the second fetch really is a second handshake.
    assert_ne!(requests[1].connection, requests[2].connection);
    // The same bootstrap kubeconfig either way.
    assert_eq!(
        std::fs::read(one.kubeconfig()).unwrap(),
        std::fs::read(two.kubeconfig()).unwrap()
    );
}

/// A proxy in kubejoin's environment (as a shell's, or systemd's DefaultEnvironment, may
/// set it for the internet) never carries the requests to the API server: nodes reach it
/// directly, and a proxy that cannot reach it would stall the join.
#[test]
fn the_api_server_is_never_reached_through_an_environment_proxy() {
    let api = double().start().unwrap();
    // A proxy on loopback that counts who connects.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    proxy.set_nonblocking(true).unwrap();
    let env: Vec<(&str, &str)> = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .map(|k| (*k, proxy_url.as_str()))
    .collect();
    let r = Node::new().discover_pinned_env(&api, &env);
    assert_exit(&r, 0, &["discovery done"]);
    assert_eq!(api.requests().len(), 1);
    assert!(proxy.accept().is_err(), "kubejoin connected to the proxy");
}

/// Servers whose certificate must not be trusted although the cluster-info they serve
/// is genuine (signed for the token, its CA matching the pin): in both flows, exit 3
/// naming why, and nothing written.
#[test]
fn a_certificate_the_cluster_ca_did_not_issue_for_this_server_now_fails_with_exit_3() {
    let genuine = double().start().unwrap().kubeconfig().to_string();
    let cases = [
        (
            "a certificate from another CA, relaying the genuine signed cluster-info",
            Pki::impostor(),
            "not signed by the pinned cluster CA",
        ),
        (
            "the right CA, but for another name",
            Pki::wrong_name(),
            "not valid for this host name or address",
        ),
        ("the right CA, but expired", Pki::expired(), "has expired"),
    ];
    for (case, pki, says) in cases {
        let api = double()
            .pki(pki)
            .kubeconfig(genuine.clone())
            .start()
            .unwrap();
        for two_fetches in [false, true] {
            let node = Node::new();
            if two_fetches {
                node.kubeadms_two_fetches();
            }
            let r = node.discover_pinned(&api, &["--timeout", "10s"]);
            eprintln!(
                "{case} (two fetches: {two_fetches}): {}",
                r.stderr.lines().last().unwrap_or_default()
            );
            assert_exit(&r, EXIT_TRUST, &[says, "trust failure"]);
            if says == "has expired" {
                assert_exit(
                    &r,
                    EXIT_TRUST,
                    &["renew the certificate on the control plane"],
                );
            }
            assert!(!node.kubeconfig().exists(), "{case}");
        }
        // One request in kubeadm's flow: the pinned client refuses the second handshake.
        assert_eq!(api.requests().len(), 2, "{case}");
    }
}

#[test]
fn a_relay_with_the_real_certificates_but_not_their_key_fails_the_handshake() {
    // The first, untrusted handshake still checks that the server signs with the key of
    // the certificate it presents: copying the real server's certificates is not enough.
    let api = double().pki(Pki::relay_without_key()).start().unwrap();
    for two_fetches in [false, true] {
        let node = Node::new();
        if two_fetches {
            node.kubeadms_two_fetches();
        }
        let r = node.discover_pinned(&api, &["--timeout", "2s"]);
        assert_exit(
            &r,
            EXIT_TRANSIENT,
            &["BadSignature", "relaying the real server's certificates"],
        );
        assert!(!node.kubeconfig().exists());
    }
    assert_eq!(
        api.requests().len(),
        0,
        "no request got through a handshake"
    );
}

#[test]
fn a_changed_kubeconfig_on_the_pinned_fetch_is_a_trust_failure() {
    let api = double().change_kubeconfig_after(1).start().unwrap();
    let node = Node::new();
    let r = node.kubeadms_two_fetches().discover_pinned(&api, &[]);
    assert_exit(&r, EXIT_TRUST, &["differs from the copy fetched first"]);
    assert!(!node.kubeconfig().exists());
}

#[test]
fn unsafe_skip_trusts_the_signed_ca_without_a_second_fetch() {
    let api = double().start().unwrap();
    let node = Node::new();
    let r = node.discover(&["--server", &api.url(), "--unsafe-skip-ca-verification"]);
    assert_exit(&r, 0, &["CA NOT pinned"]);
    assert_eq!(api.requests().len(), 1);
    assert!(node.kubeconfig().exists());
}

#[test]
fn cluster_side_errors_name_the_missing_seed_step() {
    for (code, needles) in [
        (401, vec!["answered 401", "--anonymous-auth=true"]),
        (
            403,
            vec![
                "answered 403",
                "system:anonymous",
                "kubectl create role anonymous-for-cluster-info",
                "rolebinding anonymous-for-cluster-info-binding",
            ],
        ),
        (
            404,
            vec![
                "answered 404",
                "configmaps \"cluster-info\" not found",
                "kubectl -n kube-public create configmap cluster-info",
            ],
        ),
        (500, vec!["answered 500", "kube-apiserver's log"]),
    ] {
        let api = double().always(Fault::Status(code)).start().unwrap();
        let node = Node::new();
        let r = node.discover_pinned(&api, &["--timeout", "1s"]);
        assert_exit(&r, EXIT_TRANSIENT, &needles);
        assert!(api.requests().len() >= 2, "{code} is retried");
        assert!(!node.kubeconfig().exists());
    }
}

/// A server that keeps failing is tried until the discovery timeout: the last try comes
/// just before it, and the error says how long discovery really waited.
#[test]
fn the_discovery_timeout_is_used_to_its_end() {
    let api = double().always(Fault::Status(503)).start().unwrap();
    let node = Node::new();
    let r = node.discover_pinned(&api, &["--timeout", "6s"]);
    assert_exit(&r, EXIT_TRANSIENT, &["answered 503", "(timeout 6s)"]);
    let waited: f64 = r
        .stderr
        .split("gave up after ")
        .nth(1)
        .and_then(|t| t.split('s').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no time said: {}", r.stderr));
    assert!((5.0..6.5).contains(&waited), "{waited}: {}", r.stderr);
    assert!(r.elapsed >= Duration::from_secs(5), "{:?}", r.elapsed);
    // The last request came within the last second before the deadline.
    assert!(api.requests().len() >= 4, "{}", api.requests().len());
}

#[test]
fn transient_faults_are_retried_until_it_works() {
    let api = double()
        .faults([
            Fault::Refuse,
            Fault::Status(503),
            Fault::Reset,
            Fault::RateLimit(1),
        ])
        .start()
        .unwrap();
    let node = Node::new();
    let r = node.discover_pinned(&api, &["--timeout", "60s"]);
    assert_exit(&r, 0, &["answered 503", "answered 429"]);
    // The 429's Retry-After: 1 was honoured.
    assert!(r.elapsed >= Duration::from_secs(1), "{:?}", r.elapsed);
    assert!(node.kubeconfig().exists());
}

/// Hostile and broken servers, one row each: every case ends within the discovery's
/// deadline (each try is bounded in time, whatever the server does), is retried (nothing
/// an unauthenticated server says is final), and ends with an error naming the server,
/// the cause and the fix.
#[test]
fn hostile_and_broken_servers_are_bounded_retried_and_named() {
    // A host a redirect points to: it must never see a connection.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let elsewhere_url = format!(
        "https://{}{}",
        elsewhere.local_addr().unwrap(),
        apiserver_double::CLUSTER_INFO_PATH
    );
    // (case, fault, several tries within the deadline, what the error says)
    let table: Vec<(&str, Fault, bool, Vec<&str>)> = vec![
        (
            "headers that never come (slowloris)",
            Fault::SlowHeaders,
            false,
            vec!["did not answer within"],
        ),
        (
            "a body that trickles forever",
            Fault::Trickle,
            false,
            vec!["did not answer within"],
        ),
        (
            "a TLS handshake that stalls",
            Fault::TlsStall,
            false,
            vec!["did not answer within"],
        ),
        (
            "a server that never answers",
            Fault::Stall,
            false,
            vec!["did not answer within"],
        ),
        (
            "a body over the size limit",
            Fault::Huge,
            true,
            vec!["larger than 2097152 bytes", "not a proxy"],
        ),
        (
            "a connection reset mid-body",
            Fault::Reset,
            true,
            vec![
                "ended the answer early: it reset the HTTP/2 stream",
                "load balancer",
            ],
        ),
        (
            "garbage instead of JSON",
            Fault::Garbage,
            true,
            vec![
                "not the cluster-info ConfigMap",
                "expected value",
                "not a proxy",
            ],
        ),
        (
            "wrong-typed JSON",
            Fault::WrongType,
            true,
            vec![
                "not the cluster-info ConfigMap",
                "invalid type: integer `42`",
            ],
        ),
        (
            "a redirect to another host",
            Fault::Redirect(elsewhere_url.clone()),
            true,
            vec![
                "answered 302",
                "which kubejoin does not follow",
                "never follows a redirect",
            ],
        ),
        (
            "HTTP/2 GOAWAY",
            Fault::GoAway,
            true,
            vec![
                "ended the answer early: it closed the connection with HTTP/2 GOAWAY",
                "load balancer",
            ],
        ),
        (
            "503 Service Unavailable",
            Fault::Status(503),
            true,
            vec!["answered 503", "kube-apiserver's log"],
        ),
    ];
    let deadline = Duration::from_secs(3);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = table
            .iter()
            .map(|(case, fault, several, needles)| {
                s.spawn(move || {
                    let api = double().always(fault.clone()).start().unwrap();
                    let node = Node::new();
                    let r = node.discover_pinned(&api, &["--timeout", "3s"]);
                    let out = format!("{}{}", r.stdout, r.stderr);
                    let mut wrong = Vec::new();
                    if r.code != EXIT_TRANSIENT {
                        wrong.push(format!("exit {} (want {EXIT_TRANSIENT})", r.code));
                    }
                    if r.elapsed > deadline + Duration::from_secs(2) {
                        wrong.push(format!("took {:?}", r.elapsed));
                    }
                    for n in needles.iter().chain(&[api.url().as_str()]) {
                        if !out.contains(n) {
                            wrong.push(format!("does not say {n:?}"));
                        }
                    }
                    if out.contains(REAL_TOKEN_SECRET) {
                        wrong.push("printed the token secret".into());
                    }
                    let tries = api.requests().len();
                    if *several && tries < 2 {
                        wrong.push(format!("tried {tries} times"));
                    }
                    if node.kubeconfig().exists() {
                        wrong.push("wrote a kubeconfig".into());
                    }
                    let error = out.lines().find(|l| l.starts_with("kubejoin: error:"));
                    eprintln!(
                        "{case}: exit {} after {:?}, {tries} requests; {}",
                        r.code,
                        r.elapsed,
                        error.unwrap_or_default()
                    );
                    (!wrong.is_empty()).then(|| format!("{case}: {}\n{out}", wrong.join("; ")))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        elsewhere.accept().is_err(),
        "a redirect was followed to another host"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A try that hangs is abandoned after kubeadm's 10 s per request, and the next one works.
#[test]
fn a_hung_try_is_abandoned_and_the_next_one_joins() {
    let cases = [
        Fault::SlowHeaders,
        Fault::Trickle,
        Fault::TlsStall,
        Fault::GoAway,
    ];
    std::thread::scope(|s| {
        for fault in &cases {
            s.spawn(move || {
                let api = double().faults([fault.clone()]).start().unwrap();
                let node = Node::new();
                let r = node.discover_pinned(&api, &["--timeout", "30s"]);
                assert_exit(&r, 0, &["signature verified"]);
                let limit = if *fault == Fault::GoAway { 2 } else { 14 };
                assert!(
                    r.elapsed < Duration::from_secs(limit),
                    "{fault:?}: {:?}",
                    r.elapsed
                );
            });
        }
    });
}

#[test]
fn a_stalled_server_is_given_up_on_at_the_deadline() {
    let api = double().always(Fault::Stall).start().unwrap();
    let node = Node::new();
    let r = node.discover_pinned(&api, &["--timeout", "2s"]);
    assert_exit(&r, EXIT_TRANSIENT, &["did not answer within"]);
    assert!(r.elapsed < Duration::from_secs(6), "{:?}", r.elapsed);
}

#[test]
fn an_unreachable_server_is_a_transient_failure() {
    let port = free_port();
    let node = Node::new();
    let url = format!("https://127.0.0.1:{port}");
    let r = node.discover(&[
        "--server",
        &url,
        "--ca-cert-hash",
        &pin(),
        "--timeout",
        "1s",
    ]);
    assert_exit(&r, EXIT_TRANSIENT, &["cannot connect", "firewall"]);
}

#[test]
fn servers_are_tried_in_turn() {
    let api = double().start().unwrap();
    let port = free_port();
    let node = Node::new();
    let dead = format!("https://127.0.0.1:{port}");
    let r = node.discover(&[
        "--server",
        &dead,
        "--server",
        &api.url(),
        "--ca-cert-hash",
        &pin(),
        "--timeout",
        "20s",
    ]);
    assert_exit(&r, 0, &["cannot connect"]);
    assert!(
        std::fs::read_to_string(node.kubeconfig())
            .unwrap()
            .contains(&api.url())
    );
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn the_server_inside_cluster_info_is_used_unless_configured_otherwise() {
    // cluster-info names the same loopback server by another name (as kubeadm's does
    // when the node was given an IP and the control plane a DNS name).
    let port = free_port();
    let inside = format!("https://localhost:{port}");
    let api = double()
        .listen(format!("127.0.0.1:{port}").parse().unwrap())
        .advertise(inside.clone())
        .start()
        .unwrap();
    let node = Node::new();
    let r = node.discover_pinned(&api, &[]);
    assert_exit(&r, 0, &["cluster-info names", &inside]);
    assert!(
        std::fs::read_to_string(node.kubeconfig())
            .unwrap()
            .contains(&format!("server: {inside}\n"))
    );

    let config = node.write_private(
        "etc/kubejoin/config.toml",
        "[cluster]\nuse_configured_server = true\n",
    );
    let token = node.path("token");
    let r = run(
        &[
            "discover",
            "--config",
            config.to_str().unwrap(),
            "--token-file",
            token.to_str().unwrap(),
            "--server",
            &api.url(),
            "--ca-cert-hash",
            &pin(),
        ],
        &[],
        None,
    );
    assert_exit(&r, 0, &["(use_configured_server = true)"]);
    assert!(
        r.stdout
            .starts_with(&format!("server:        {}", api.url())),
        "{}",
        r.stdout
    );
}

#[test]
fn everything_from_the_config_file_and_a_dropin() {
    let api = double().start().unwrap();
    let node = Node::new();
    let config = node.write_private(
        "etc/kubejoin/config.toml",
        &format!(
            "[cluster]\nserver = \"https://127.0.0.1:1\"\ntoken = \"{REAL_TOKEN_ID}.{REAL_TOKEN_SECRET}\"\nca_cert_hashes = [\"{}\"]\ndiscovery_timeout = \"20s\"\n",
            pin()
        ),
    );
    node.write_private(
        "etc/kubejoin/config.d/50-server.toml",
        &format!("[cluster]\nserver = \"{}\"\n", api.url()),
    );
    let r = run(
        &["discover", "--config", config.to_str().unwrap()],
        &[],
        None,
    );
    assert_exit(&r, 0, &[&api.url()]);
}

#[test]
fn the_token_from_stdin_and_from_a_systemd_credential() {
    let api = double().start().unwrap();
    let node = Node::new();
    let config = node.path("etc/kubejoin/config.toml");
    let r = run(
        &[
            "discover",
            "--config",
            config.to_str().unwrap(),
            "--token-file",
            "-",
            "--server",
            &api.url(),
            "--ca-cert-hash",
            &pin(),
        ],
        &[],
        Some(&format!("{REAL_TOKEN_ID}.{REAL_TOKEN_SECRET}")),
    );
    assert_exit(&r, 0, &[]);

    let creds = node.path("credentials");
    node.write_private(
        "credentials/token",
        &format!("{REAL_TOKEN_ID}.{REAL_TOKEN_SECRET}"),
    );
    let r = run(
        &[
            "discover",
            "--config",
            config.to_str().unwrap(),
            "--server",
            &api.url(),
            "--ca-cert-hash",
            &pin(),
        ],
        &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())],
        None,
    );
    assert_exit(&r, 0, &[]);
}

#[test]
fn configuration_errors_exit_2_naming_file_and_key() {
    let node = Node::new();
    let config = node.path("etc/kubejoin/config.toml");
    let cfg = config.to_str().unwrap();
    let token = node.path("token");
    let tok = token.to_str().unwrap();

    // A token that is not one: said without echoing it.
    let bad = node.write_private("bad-token", "0VE35R.l8o5vx90ot05g17z");
    let r = run(
        &[
            "discover",
            "--config",
            cfg,
            "--token-file",
            bad.to_str().unwrap(),
            "--server",
            "https://127.0.0.1:1",
            "--ca-cert-hash",
            &pin(),
        ],
        &[],
        None,
    );
    assert_exit(&r, EXIT_CONFIG, &["not one of [a-z0-9]", "--token-file"]);
    assert!(!r.stderr.contains("l8o5vx90ot05g17z"));

    // No pin and no unsafe flag.
    let r = run(
        &[
            "discover",
            "--config",
            cfg,
            "--token-file",
            tok,
            "--server",
            "https://127.0.0.1:1",
        ],
        &[],
        None,
    );
    assert_exit(
        &r,
        EXIT_CONFIG,
        &["cluster.ca_cert_hashes", "unsafe_skip_ca_verification"],
    );

    // A malformed pin.
    let r = run(
        &[
            "discover",
            "--config",
            cfg,
            "--token-file",
            tok,
            "--server",
            "https://127.0.0.1:1",
            "--ca-cert-hash",
            "sha256:00",
        ],
        &[],
        None,
    );
    assert_exit(&r, EXIT_CONFIG, &["--ca-cert-hash", "64 hex digits"]);

    // A plain-http server.
    let r = run(
        &[
            "discover",
            "--config",
            cfg,
            "--token-file",
            tok,
            "--server",
            "http://127.0.0.1:1",
            "--ca-cert-hash",
            &pin(),
        ],
        &[],
        None,
    );
    assert_exit(&r, EXIT_CONFIG, &["https"]);

    // An unknown key in a file names file, line and key.
    node.write_private("etc/kubejoin/config.toml", "[cluster]\nserverr = \"x\"\n");
    let r = run(&["discover", "--config", cfg], &[], None);
    assert_exit(&r, EXIT_CONFIG, &[cfg, "line 2", "serverr"]);

    // A token in a file others can read.
    let world = node.write_private(
        "etc/kubejoin/config.toml",
        &format!("[cluster]\nserver = \"127.0.0.1:6443\"\ntoken = \"{REAL_TOKEN_ID}.{REAL_TOKEN_SECRET}\"\nunsafe_skip_ca_verification = true\n"),
    );
    std::fs::set_permissions(&world, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = run(&["discover", "--config", cfg], &[], None);
    assert_exit(&r, EXIT_CONFIG, &["chmod 600", cfg]);

    // A named config file that does not exist.
    let missing = node.path("nope.toml");
    let r = run(
        &["discover", "--config", missing.to_str().unwrap()],
        &[],
        None,
    );
    assert_exit(&r, EXIT_CONFIG, &["nope.toml", "cannot read"]);

    // The token is never an argument.
    let r = run(&["discover", "--token", "x"], &[], None);
    assert_exit(&r, EXIT_CONFIG, &["--token"]);
}

#[test]
fn help_documents_the_exit_codes() {
    let r = run(&["discover", "--help"], &[], None);
    assert_exit(&r, 0, &["Exit status:", "3  trust failure", "--token-file"]);
}

#[test]
fn the_real_servers_captured_answer_is_accepted_byte_for_byte() {
    // Capture 02 of the real kube-apiserver, under its CA and serving key, for token 2.
    let api = ApiServer::builder()
        .capture("02-cluster-info-anon-token1-token2")
        .unwrap()
        .start()
        .unwrap();
    let node = Node::new();
    node.write_private("token", "c46dzr.hk5w0sqna1wokaou\n");
    let r = node.discover_pinned(&api, &[]);
    // The real cluster-info names https://127.0.0.1:6443, not the double's port.
    assert_exit(
        &r,
        0,
        &[
            "signature verified",
            "cluster-info names",
            "https://127.0.0.1:6443",
        ],
    );
    assert!(
        r.stdout
            .starts_with("server:        https://127.0.0.1:6443\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn tokens_the_signer_will_not_sign_for_wait_and_expired_ones_stop() {
    use apiserver_double::secret::BootstrapSecret;
    // As captures 05 and 07: usage-bootstrap-signing "false", and an expired token.
    let mut no_signing = BootstrapSecret::new(REAL_TOKEN_ID, REAL_TOKEN_SECRET);
    no_signing
        .data
        .insert("usage-bootstrap-signing".into(), "false".into());
    let mut expired = BootstrapSecret::new(REAL_TOKEN_ID, REAL_TOKEN_SECRET);
    expired
        .data
        .insert("expiration".into(), "2026-11-29T05:49:07Z".into());
    // A token that authenticates and may not sign: the signer may yet be told to.
    // An expired one the API server refuses too: no waiting, a person must give a new one.
    for (secret, code, said) in [
        (no_signing, EXIT_TRANSIENT, "usage-bootstrap-signing"),
        (expired, EXIT_CONFIG, "it is unknown, expired or deleted"),
    ] {
        let api = ApiServer::builder()
            .secret(secret)
            .token("c46dzr", "hk5w0sqna1wokaou")
            .start()
            .unwrap();
        let node = Node::new();
        let r = node.discover_pinned(&api, &["--timeout", "1s"]);
        assert_exit(&r, code, &["no signature for token id 0ve35r", said]);
        assert!(!node.kubeconfig().exists());
    }
}

#[test]
fn a_clock_an_hour_off_is_reported_before_tls_errors_confuse() {
    // The API server's clock (its Date header) is an hour ahead of this host's.
    let api = double().date_offset(3600).start().unwrap();
    let node = Node::new();
    let r = node.discover_pinned(&api, &["--output", "json"]);
    assert_exit(
        &r,
        0,
        &["s behind the API server's (its Date header)", "timedatectl"],
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // Date headers have whole seconds: the two clocks may be read across a second's edge.
    let skew = v["clock_skew_s"].as_i64().unwrap();
    assert!((-3601..=-3599).contains(&skew), "{skew}");

    // In step: nothing said.
    let api = double().start().unwrap();
    let r = node.discover_pinned(&api, &["--output", "json"]);
    assert_exit(&r, 0, &[]);
    assert!(!r.stderr.contains("clock"), "{}", r.stderr);
}

/// `token_command`: the token from a program (a secret store's CLI), so that an image need
/// not hold one. Discovery succeeds with it; a program that fails or hangs is retried by
/// systemd (exit 1) with its own last words; output that is not a token needs a person
/// (exit 2) and is never echoed; a file that others may write cannot name a program
/// kubejoin runs as root.
#[test]
fn a_token_from_a_program() {
    let api = double().start().unwrap();
    let node = Node::new();
    let script = node.path("print-token");
    let program = |text: &str| {
        node.write_private("print-token", &format!("#!/bin/sh\n{text}\n"));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    };
    let config = node.path("etc/kubejoin/config.toml");
    let configure = |extra: &str| {
        node.write_private(
            "etc/kubejoin/config.toml",
            &format!(
                "[cluster]\ntoken_command = [\"{}\", \"--cluster\", \"prod\"]\n{extra}",
                script.display()
            ),
        )
    };
    let (url, pin, kubeconfig) = (api.url(), pin(), node.kubeconfig());
    let discover = || {
        run(
            &[
                "discover",
                "--config",
                config.to_str().unwrap(),
                "--server",
                &url,
                "--ca-cert-hash",
                &pin,
                "--write-kubeconfig",
                kubeconfig.to_str().unwrap(),
            ],
            &[],
            None,
        )
    };

    program(&format!(
        "[ \"$*\" = \"--cluster prod\" ] || exit 9\ncat {}",
        node.path("token").display()
    ));
    configure("");
    assert_exit(&discover(), 0, &["signature of token id 0ve35r verified"]);

    // [proxy] reaches the program (a secret store on the internet), with the API server,
    // loopback and the metadata service direct; discovery itself stays direct.
    program(&format!(
        "[ \"$HTTPS_PROXY\" = http://proxy.corp.example:3128 ] || {{ echo \"HTTPS_PROXY=$HTTPS_PROXY\" >&2; exit 7; }}\n\
         case \",$no_proxy,\" in *,127.0.0.1,*169.254.169.254,*) ;; *) echo \"no_proxy=$no_proxy\" >&2; exit 8 ;; esac\n\
         cat {}",
        node.path("token").display()
    ));
    configure("\n[proxy]\nhttps = \"http://proxy.corp.example:3128\"\n");
    assert_exit(&discover(), 0, &["signature of token id 0ve35r verified"]);

    program(
        "echo 'fetching...' >&2\necho 'AccessDenied: not authorized to read join-token' >&2\nexit 5",
    );
    let r = discover();
    assert_exit(
        &r,
        EXIT_TRANSIENT,
        &[
            "cluster.token_command",
            "failed (exit status: 5): AccessDenied: not authorized to read join-token",
            "run the command as root by hand",
        ],
    );

    program("exec sleep 60");
    configure("token_command_timeout = \"500ms\"\n");
    let r = discover();
    assert_exit(&r, EXIT_TRANSIENT, &["did not finish within 0.5s"]);
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);

    program("echo 'password: hunter2'");
    configure("");
    let r = discover();
    assert_exit(
        &r,
        EXIT_CONFIG,
        &["cluster.token_command", "print-token's output"],
    );
    assert!(
        !r.stderr.contains("hunter2") && !r.stdout.contains("hunter2"),
        "{}",
        r.stderr
    );

    // A configuration others may write must not name what root runs.
    configure("");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o664)).unwrap();
    let r = discover();
    assert_exit(
        &r,
        EXIT_CONFIG,
        &[
            "names a program kubejoin runs as root, but others may write it",
            "chmod go-w",
        ],
    );

    // One source of the token per file.
    node.write_private(
        "etc/kubejoin/config.toml",
        "[cluster]\ntoken_file = \"/t\"\ntoken_command = [\"/bin/true\"]\n",
    );
    assert_exit(
        &discover(),
        EXIT_CONFIG,
        &["set one of cluster.token, cluster.token_file and cluster.token_command"],
    );
}
