//! `kubejoin doctor`: on a worker, with only its configuration, says whether a join would
//! succeed and, where not, which piece is missing and how to add it. One line per check;
//! every request is the worker's own (anonymous, then with its bootstrap token over TLS
//! trusting only the pinned CA). The pure verdicts are unit-tested; [`run`] gathers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::prepare::SIGNER_FIX;
use crate::cluster::{Access, Api, ApiError, RIGHTS};
use crate::cluster_info::SIGNATURE_PREFIX;
use crate::config::Settings;
use crate::discovery::http::{self, FetchError, Response};
use crate::endpoint::Endpoint;
use crate::pin::{self, CaPin};
use crate::x509::CertInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    /// Not checked: an earlier check failed.
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn line(name: &str, verdict: Verdict, detail: impl Into<String>, fix: Option<String>) -> Line {
    Line {
        name: name.into(),
        verdict,
        detail: detail.into(),
        fix,
    }
}

const CREATE_TOKEN: &str = "create a token on the control plane (`kubejoin token create --output config`, or `kubeadm token create`) and put it in this node's configuration; `kubejoin token list` shows the cluster's tokens";

/// The anonymous read of cluster-info, read as discovery reads it: its data, or the line
/// saying what the answer means, with discovery's fix for it.
pub fn cluster_info_line(
    server: &Endpoint,
    resp: &Response,
) -> (Line, Option<BTreeMap<String, String>>) {
    let name = "cluster-info";
    let failed = match crate::discovery::configmap_data(server, resp) {
        Ok(data) => {
            let ok = line(
                name,
                Verdict::Ok,
                "kube-public/cluster-info is readable anonymously",
                None,
            );
            return (ok, Some(data));
        }
        Err(t) => t,
    };
    let detail = match resp.status {
        404 => "the ConfigMap kube-public/cluster-info does not exist (404)".into(),
        403 => "anonymous users may not read kube-public/cluster-info (403)".into(),
        401 => "the API server refuses anonymous requests (401)".into(),
        _ => failed.to_string(),
    };
    (line(name, Verdict::Fail, detail, Some(failed.fix())), None)
}

/// The CA of cluster-info against the pins.
pub fn pin_line(ca: &[CertInfo], pins: &[CaPin], unsafe_skip: bool) -> Line {
    let name = "ca-pin";
    let seen = ca
        .iter()
        .map(|c| {
            format!(
                "{}{}",
                CaPin::of(c),
                c.subject_cn
                    .as_ref()
                    .map(|cn| format!(" (CN={cn})"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if pins.is_empty() {
        return line(
            name,
            if unsafe_skip {
                Verdict::Warn
            } else {
                Verdict::Fail
            },
            format!("no CA pin configured; cluster-info's CA is {seen}"),
            Some(format!(
                "set ca_cert_hashes = [\"{}\"] once you have checked it on the control plane",
                ca.first()
                    .map(|c| CaPin::of(c).to_string())
                    .unwrap_or_default()
            )),
        );
    }
    match pin::find_match(pins, ca) {
        Some(c) => line(
            name,
            Verdict::Ok,
            format!(
                "cluster-info's CA {} matches a configured pin",
                CaPin::of(c)
            ),
            None,
        ),
        None => {
            let e = crate::discovery::TrustFailure::PinMismatch {
                seen: ca
                    .iter()
                    .map(|c| (CaPin::of(c), c.subject_cn.clone()))
                    .collect(),
                configured: pins.to_vec(),
            };
            line(name, Verdict::Fail, e.to_string(), Some(e.fix()))
        }
    }
}

/// What the bootstrap token's own requests said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAuth {
    /// It authenticated; whether it may create CSRs and whether they would be approved.
    Accepted {
        create_csr: (bool, String),
        auto_approve: (bool, String),
    },
    /// 401: unknown, expired, or not for authentication.
    Refused,
    /// Not asked: no trusted connection.
    NotChecked(String),
}

/// The signature for this token id, read together with what the token's own requests
/// said: a missing signature of a token the API server accepts means the signer does not
/// run (or the token may not sign); of a refused one, that the token is unknown or expired.
pub fn signature_line(
    signature: Option<Result<(), String>>,
    token_id: &str,
    auth: &TokenAuth,
) -> Line {
    let name = "signature";
    match (signature, auth) {
        (Some(Ok(())), _) => line(
            name,
            Verdict::Ok,
            format!("{SIGNATURE_PREFIX}{token_id} verifies with this token's secret"),
            None,
        ),
        (Some(Err(why)), _) => line(
            name,
            Verdict::Fail,
            format!("{SIGNATURE_PREFIX}{token_id} does not verify with this token's secret: {why}"),
            Some(format!(
                "the token's secret is wrong (compare it with token-secret in kube-system/bootstrap-token-{token_id}), or something between this node and the API server alters cluster-info"
            )),
        ),
        (None, TokenAuth::Accepted { .. }) => line(
            name,
            Verdict::Fail,
            format!(
                "cluster-info has no {SIGNATURE_PREFIX}{token_id}, yet the API server accepts the token: the bootstrap signer does not run, or the token's Secret lacks usage-bootstrap-signing: \"true\""
            ),
            Some(format!(
                "{SIGNER_FIX}; or create a token that may sign (`kubejoin token create`)"
            )),
        ),
        (None, TokenAuth::Refused) => line(
            name,
            Verdict::Fail,
            format!(
                "cluster-info has no {SIGNATURE_PREFIX}{token_id} and the API server refuses the token: it is unknown, expired or deleted, or single-use and burned by the node that joined with it (no Secret kube-system/bootstrap-token-{token_id})"
            ),
            Some(CREATE_TOKEN.into()),
        ),
        (None, TokenAuth::NotChecked(_)) => line(
            name,
            Verdict::Fail,
            format!(
                "cluster-info has no {SIGNATURE_PREFIX}{token_id}: the token is unknown or expired, or the bootstrap signer does not run"
            ),
            Some(format!("{CREATE_TOKEN}; {SIGNER_FIX}")),
        ),
    }
}

/// The token's own rights, from its SelfSubjectAccessReviews.
pub fn token_lines(auth: &TokenAuth, token_id: &str) -> Vec<Line> {
    match auth {
        TokenAuth::Accepted {
            create_csr,
            auto_approve,
        } => {
            let right = |name: &str,
                         (allowed, reason): &(bool, String),
                         r: &crate::cluster::Right| {
                if *allowed {
                    line(name, Verdict::Ok, format!("{}: {reason}", r.what), None)
                } else {
                    line(
                        name,
                        Verdict::Fail,
                        format!(
                            "the token may not {} {}{}",
                            r.access.verb,
                            r.access.resource,
                            if r.access.subresource.is_empty() {
                                String::new()
                            } else {
                                format!("/{}", r.access.subresource)
                            }
                        ),
                        Some(format!(
                            "bind group {} to ClusterRole {} (the ClusterRoleBinding {}): `kubejoin cluster prepare` on the control plane",
                            r.group, r.cluster_role, r.binding
                        )),
                    )
                }
            };
            vec![
                line(
                    "token",
                    Verdict::Ok,
                    format!("the API server accepts token {token_id}"),
                    None,
                ),
                right("csr-create", create_csr, &RIGHTS[0]),
                right("csr-auto-approve", auto_approve, &RIGHTS[1]),
            ]
        }
        TokenAuth::Refused => vec![
            line(
                "token",
                Verdict::Fail,
                format!(
                    "the API server refuses token {token_id} (401): it is unknown, expired, deleted or not for authentication"
                ),
                Some(format!(
                    "{CREATE_TOKEN}; if `kubejoin token list` shows it valid, kube-apiserver needs --enable-bootstrap-token-auth=true (`kubejoin cluster prepare` checks it)"
                )),
            ),
            line(
                "csr-create",
                Verdict::Skip,
                "not checked: the token is refused",
                None,
            ),
            line(
                "csr-auto-approve",
                Verdict::Skip,
                "not checked: the token is refused",
                None,
            ),
        ],
        TokenAuth::NotChecked(why) => ["token", "csr-create", "csr-auto-approve"]
            .iter()
            .map(|n| line(n, Verdict::Skip, format!("not checked: {why}"), None))
            .collect(),
    }
}

/// This host's clock against the API server's `Date` and the CA's validity.
pub fn clock_line(now: i64, server_date: Option<i64>, ca: &[CertInfo]) -> Line {
    let name = "clock";
    if let Some(c) = ca.first()
        && let Some(w) = crate::clock::ca_validity_warning(now, &c.not_before, &c.not_after)
    {
        return line(
            name,
            Verdict::Fail,
            w,
            Some("fix the clock or the CA as said".into()),
        );
    }
    match server_date {
        None => line(
            name,
            Verdict::Warn,
            "the API server sent no Date header",
            None,
        ),
        Some(date) => match crate::clock::skew_warning(now, date) {
            None => line(
                name,
                Verdict::Ok,
                format!("within {} s of the API server's", crate::clock::TOLERANCE_S),
                None,
            ),
            Some((skew, text)) => {
                // kubelet's certificates are signed from 5 minutes back: beyond that a
                // join fails; below, it only risks it.
                let verdict = if skew.abs() > 300 {
                    Verdict::Fail
                } else {
                    Verdict::Warn
                };
                line(
                    name,
                    verdict,
                    text,
                    Some("timedatectl set-ntp true (or chrony), then check `timedatectl`".into()),
                )
            }
        },
    }
}

/// Everything doctor found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// No check failed.
    pub join_would_succeed: bool,
    pub lines: Vec<Line>,
}

impl Report {
    /// `N check(s) failed: a, b` when some failed.
    pub fn failures(&self) -> Option<String> {
        let failed: Vec<&str> = self
            .lines
            .iter()
            .filter(|l| l.verdict == Verdict::Fail)
            .map(|l| l.name.as_str())
            .collect();
        (!failed.is_empty())
            .then(|| format!("{} check(s) failed: {}", failed.len(), failed.join(", ")))
    }
}

pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for l in &report.lines {
        let v = match l.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        };
        out.push_str(&format!("{v:<5} {:<20} {}\n", l.name, l.detail));
        if let Some(fix) = &l.fix {
            out.push_str(&format!("{:<5} {:<20} fix: {fix}\n", "", ""));
        }
    }
    match report.failures() {
        None => out.push_str("a join would succeed\n"),
        Some(f) => out.push_str(&format!("a join would not succeed: {f}\n")),
    }
    out
}

/// No token on this node: fine once it has joined (kubejoin removes the token's file then),
/// a failure before.
pub fn no_token_line(why: &crate::config::ConfigError, joined: bool) -> Line {
    if joined {
        line(
            "token",
            Verdict::Ok,
            "none on this node, which has joined: kubelet has its own client certificate (kubejoin \
             removes the token's file after the join; keep_token = true keeps it)",
            None,
        )
    } else {
        line(
            "token",
            Verdict::Fail,
            why.to_string(),
            Some(
                "give this node a bootstrap token: token_file, token or token_command in \
                 /etc/kubejoin/config.toml, or a systemd credential named \"token\" (`kubejoin token create` \
                 on the control plane makes one)"
                    .into(),
            ),
        )
    }
}

/// The cluster's side, as this worker sees it.
pub async fn cluster_lines(settings: &Settings) -> Vec<Line> {
    let c = &settings.cluster;
    let mut lines = Vec::new();
    let untrusted = http::untrusted_client();
    let mut answer = None;
    for server in &c.servers {
        let start = Instant::now();
        match http::get_cluster_info(&untrusted, server, Duration::from_secs(10)).await {
            Ok(resp) => {
                let cn = resp
                    .presented
                    .first()
                    .and_then(|d| crate::x509::parse_der(d).ok())
                    .and_then(|c| c.subject_cn)
                    .map(|cn| format!(", certificate CN={cn}"))
                    .unwrap_or_default();
                lines.push(line(
                    &format!("reach {server}"),
                    Verdict::Ok,
                    format!(
                        "TLS handshake{cn}, answered {} in {} ms",
                        resp.status,
                        start.elapsed().as_millis()
                    ),
                    None,
                ));
                answer.get_or_insert((server.clone(), resp));
            }
            Err(e) => lines.push(line(
                &format!("reach {server}"),
                Verdict::Fail,
                e.to_string(),
                Some(reach_fix(&e)),
            )),
        }
    }
    let Some((server, resp)) = answer else {
        return lines;
    };
    // A join tries the servers in turn: one that answers is enough; the others warn.
    for l in lines.iter_mut().filter(|l| l.verdict == Verdict::Fail) {
        l.verdict = Verdict::Warn;
    }
    let (read, data) = cluster_info_line(&server, &resp);
    lines.push(read);
    let Some(data) = data else {
        for n in ["ca-pin", "signature", "clock", "token"] {
            lines.push(line(n, Verdict::Skip, "not checked: no cluster-info", None));
        }
        return lines;
    };
    let kubeconfig = data.get("kubeconfig").map_or("", String::as_str);
    let info = match crate::kubeconfig::parse_cluster_info(kubeconfig) {
        Ok(i) => i,
        Err(e) => {
            lines.push(line(
                "ca-pin",
                Verdict::Fail,
                format!("cluster-info's kubeconfig is not usable: {e}"),
                Some(crate::discovery::DiscoveryError::Unusable(String::new()).fix()),
            ));
            return lines;
        }
    };
    let ca = crate::x509::parse_pem_bundle(&info.ca_pem).unwrap_or_default();
    let pin = pin_line(&ca, &c.ca_cert_hashes, c.unsafe_skip_ca_verification);
    let trusted = pin.verdict != Verdict::Fail;
    lines.push(pin);
    let token = match c.token() {
        Ok(t) => t,
        Err(e) => {
            lines.push(no_token_line(
                &e,
                crate::join::has_client_certificate(settings),
            ));
            return lines;
        }
    };

    // The token's own requests, over TLS trusting only the (pinned) CA, to the server a
    // join would use.
    let target = if c.use_configured_server {
        server.clone()
    } else {
        info.server.clone()
    };
    let mut tls_failure = None;
    let auth = if !trusted {
        TokenAuth::NotChecked("cluster-info's CA is not pinned".into())
    } else {
        match Api::new(&target.to_string(), &info.ca_pem, Some(token.expose())) {
            Err(e) => TokenAuth::NotChecked(e),
            Ok(api) => match token_auth(&api).await {
                Ok(auth) => auth,
                Err(e) => {
                    let (l, why) = unanswered(&e, &target.to_string());
                    tls_failure = Some(l);
                    TokenAuth::NotChecked(why)
                }
            },
        }
    };
    let signature = data
        .get(&crate::cluster_info::signature_key(token.id()))
        .filter(|s| !s.is_empty())
        .map(|s| {
            crate::jws::verify_detached(
                s,
                kubeconfig.as_bytes(),
                token.id(),
                token.secret().as_bytes(),
            )
            .map_err(|e| e.to_string())
        });
    lines.push(signature_line(signature, token.id(), &auth));
    lines.push(clock_line(crate::clock::unix_now(), resp.date, &ca));
    let tls_ok = tls_failure.is_none();
    lines.extend(tls_failure);
    lines.extend(token_lines(&auth, token.id()));
    if trusted && tls_ok {
        lines.push(kubelet_config_line(&target.to_string(), &info.ca_pem, token).await);
    }
    lines
}

/// Which kubelet configuration a join would start from: the cluster's (read as a join
/// reads it) or kubejoin's defaults, and why.
async fn kubelet_config_line(
    server: &str,
    ca_pem: &[u8],
    token: &crate::token::BootstrapToken,
) -> Line {
    use crate::join::cluster_config::{Read, Reader, api_version, as_token, read};
    let name = "kubelet-config";
    let api = match as_token(server, ca_pem, token) {
        Ok(api) => api,
        Err(e) => return line(name, Verdict::Fail, e.to_string(), e.fix()),
    };
    let version = api_version(&api).await;
    match read(&api, version.as_ref(), Reader::Token).await {
        Ok(Read::Found(c)) => line(
            name,
            Verdict::Ok,
            format!(
                "a join starts kubelet's configuration from the cluster's {} (clusterDNS {})",
                c.configmap,
                c.fields
                    .get("clusterDNS")
                    .map(|v| v.to_string())
                    .unwrap_or("not set".into())
            ),
            None,
        ),
        Ok(Read::NotRead { why, fix, .. }) => line(
            name,
            Verdict::Warn,
            format!("a join starts kubelet's configuration from kubejoin's defaults: {why}"),
            Some(fix),
        ),
        Err(e) => line(name, Verdict::Fail, e.to_string(), e.fix()),
    }
}

/// The line for a SelfSubjectAccessReview as the token that got no verdict, and why the
/// token's checks were skipped: no verified connection (the certificate, or the server a
/// join would use is unreachable) fails; another answer only warns.
pub fn unanswered(e: &ApiError, target: &str) -> (Line, String) {
    match e {
        ApiError::Fetch(f) => {
            let fix = match f {
                FetchError::Certificate { .. } => {
                    crate::discovery::TrustFailure::Certificate(f.clone()).fix()
                }
                _ => e.fix(),
            };
            (
                line("trusted-tls", Verdict::Fail, format!("{target}: {e}"), Some(fix)),
                format!("no trusted connection to {target}"),
            )
        }
        _ => (
            line(
                "token-review",
                Verdict::Warn,
                format!("the API server gave no verdict on a SelfSubjectAccessReview as the token: {e}"),
                Some("every authenticated user may create SelfSubjectAccessReviews through ClusterRole system:basic-user: check its ClusterRoleBinding system:basic-user".into()),
            ),
            "the API server gave no verdict as the token".into(),
        ),
    }
}

fn reach_fix(e: &FetchError) -> String {
    match e {
        FetchError::Handshake { .. } => "the server does not hold the key of its certificate: something is impersonating the API server, or a TLS proxy is in the way".into(),
        _ => "check the server address and port in the configuration, that kube-apiserver runs, and that no firewall drops the connection (`curl -k https://HOST:PORT/healthz`)".into(),
    }
}

/// The bootstrap token's SelfSubjectAccessReviews: may it create CSRs, would they be
/// approved automatically.
async fn token_auth(api: &Api) -> Result<TokenAuth, ApiError> {
    let ask = |a: &'static Access<'static>| a.review_self(api);
    match ask(&RIGHTS[0].access).await {
        Err(e) if e.status() == Some(401) => Ok(TokenAuth::Refused),
        Err(e) => Err(e),
        Ok(create_csr) => Ok(TokenAuth::Accepted {
            create_csr,
            auto_approve: ask(&RIGHTS[1].access).await?,
        }),
    }
}

/// This node's side: kubelet, its version and settings, the runtime and its cgroup
/// driver, as `kubejoin preflight` and the host plan of `kubejoin run` see them.
pub async fn node_lines(settings: &Settings) -> Vec<Line> {
    let mut lines = Vec::new();
    let systemd = crate::systemd::dbus::Systemd::connect().await;
    let mut settings = settings.clone();
    if let Ok(s) = &systemd {
        // Undecided (the bus failed) it stays Detect, and the line below says so.
        let _ = crate::join::resolve_runtime(&mut settings, s).await;
    }
    let settings = &settings;
    let node = match crate::join::node_kubelet(settings) {
        Ok(n) => n,
        Err(e) => {
            lines.push(line(
                "kubelet-settings",
                Verdict::Fail,
                e.to_string(),
                e.fix(),
            ));
            return lines;
        }
    };
    let (bus, kubelet_active) = match &systemd {
        Ok(s) => match s.status(crate::kubelet::files::KUBELET_UNIT).await {
            Ok(k) => (Ok(()), k.is_active()),
            Err(e) => (Err(e.to_string()), false),
        },
        Err(e) => (Err(e.to_string()), false),
    };
    let facts = node.preflight_facts(settings, bus, kubelet_active);
    for c in crate::preflight::evaluate(&facts, &settings.kubelet, &[]) {
        let verdict = match (c.ok, c.severity) {
            (true, _) => Verdict::Ok,
            (false, crate::preflight::Severity::Error) => Verdict::Fail,
            (false, crate::preflight::Severity::Warning) => Verdict::Warn,
        };
        lines.push(line(c.name, verdict, c.message, c.fix));
    }
    // The runtime and kubelet's cgroup driver: what `kubejoin run` would make of them.
    let driver = &settings.kubelet.cgroup_driver;
    let runtime = match settings.host.runtime {
        crate::host::Runtime::Docker => "docker",
        _ => "containerd",
    };
    let disagree = match (settings.host.runtime, node.profile.as_ref()) {
        (crate::host::Runtime::None, Some(p)) => {
            crate::join::runtime_left_alone_agrees(settings, p).err()
        }
        _ => None,
    };
    let runtime_line = match (&systemd, settings.host.runtime, disagree) {
        (_, _, Some(e)) => line("cgroup-driver", Verdict::Fail, e.to_string(), e.fix()),
        (_, crate::host::Runtime::None | crate::host::Runtime::Detect, None) => line(
            "cgroup-driver",
            Verdict::Warn,
            format!(
                "kubelet uses cgroup driver {driver}; [host] container_runtime = \"none\": kubejoin does not configure the runtime"
            ),
            Some(format!(
                "make the runtime use cgroup driver {driver} too, or set [host] container_runtime"
            )),
        ),
        (Err(e), _, None) => line(
            "cgroup-driver",
            Verdict::Skip,
            format!("not checked: {e}"),
            None,
        ),
        (Ok(s), _, None) => match crate::host::inspect(&settings.host, s).await {
            Err(e) => line("cgroup-driver", Verdict::Fail, format!("{e:#}"), None),
            Ok(facts) => match crate::host::plan(&settings.host, &facts) {
                Err(e) => line("cgroup-driver", Verdict::Fail, e.to_string(), Some(e.fix())),
                Ok(changes) => {
                    let edits: Vec<&str> =
                        ["/etc/docker/daemon.json", "/etc/containerd/config.toml"]
                            .into_iter()
                            .filter(|f| changes.iter().any(|c| c.describe().contains(f)))
                            .collect();
                    let detail = if edits.is_empty() {
                        format!("kubelet and {runtime} use cgroup driver {driver}")
                    } else {
                        format!(
                            "kubelet uses cgroup driver {driver}; `kubejoin run` sets {runtime}'s to match ({})",
                            edits.join(", ")
                        )
                    };
                    line("cgroup-driver", Verdict::Ok, detail, None)
                }
            },
        },
    };
    lines.push(runtime_line);
    if crate::join::has_client_certificate(settings) {
        lines.push(node_ready_line(crate::join::readiness_now().await));
    }
    lines
}

/// On a joined node: is its Node Ready, and if not why, as kubelet's Ready condition says
/// (read with kubelet's own credentials). Not Ready only warns: the node is in.
pub fn node_ready_line(readiness: Result<crate::kubelet::node_status::Readiness, String>) -> Line {
    let name = "node-ready";
    match readiness {
        Ok(r) if r.ready && r.fix.is_none() => line(name, Verdict::Ok, r.line(), None),
        Ok(r) => {
            let detail = match &r.why {
                Some(why) if !r.ready => format!("{}: {why}", r.line()),
                _ => r.line(),
            };
            line(name, Verdict::Warn, detail, r.fix)
        }
        Err(why) => line(
            name,
            Verdict::Warn,
            format!("this node has joined, but its Node cannot be read now: {why}"),
            Some("check that kubelet.service runs and the API server is reachable".into()),
        ),
    }
}

/// Every check.
pub async fn run(settings: &Settings) -> Report {
    let mut lines = cluster_lines(settings).await;
    lines.extend(node_lines(settings).await);
    Report {
        join_would_succeed: !lines.iter().any(|l| l.verdict == Verdict::Fail),
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> Vec<CertInfo> {
        crate::x509::parse_pem_bundle(include_bytes!("../tests/fixtures/real-apiserver/ca.crt"))
            .unwrap()
    }

    #[test]
    fn each_missing_piece_is_named() {
        let server: Endpoint = "https://10.0.0.1:6443".parse().unwrap();
        let r = |s| cluster_info_line(&server, &Response::with_body(s, Vec::new())).0;
        let cm =
            br#"{"kind":"ConfigMap","metadata":{"name":"cluster-info"},"data":{"kubeconfig":"k"}}"#;
        let (ok, data) = cluster_info_line(&server, &Response::with_body(200, cm.to_vec()));
        assert_eq!(ok.verdict, Verdict::Ok);
        assert_eq!(data.unwrap()["kubeconfig"], "k");
        let (not, data) = cluster_info_line(&server, &Response::with_body(200, b"{}".to_vec()));
        assert_eq!((not.verdict, data), (Verdict::Fail, None));
        assert!(r(404).detail.contains("does not exist"));
        assert!(r(404).fix.unwrap().contains("kubejoin cluster prepare"));
        assert!(
            r(403)
                .fix
                .unwrap()
                .contains("kubeadm:bootstrap-signer-clusterinfo")
        );
        assert!(r(401).fix.unwrap().contains("--anonymous-auth=true"));

        let accepted = TokenAuth::Accepted {
            create_csr: (true, "RBAC: allowed".into()),
            auto_approve: (false, String::new()),
        };
        let s = signature_line(None, "abcdef", &accepted);
        assert_eq!(s.verdict, Verdict::Fail);
        assert!(s.fix.unwrap().contains("--controllers=*,bootstrapsigner"));
        let s = signature_line(None, "abcdef", &TokenAuth::Refused);
        assert!(
            s.detail.contains("unknown, expired or deleted"),
            "{}",
            s.detail
        );
        let s = signature_line(Some(Err("bad".into())), "abcdef", &accepted);
        assert!(s.fix.unwrap().contains("bootstrap-token-abcdef"));
        assert_eq!(
            signature_line(Some(Ok(())), "abcdef", &TokenAuth::Refused).verdict,
            Verdict::Ok
        );

        let t = token_lines(&accepted, "abcdef");
        assert_eq!(t[1].verdict, Verdict::Ok);
        assert_eq!(t[2].verdict, Verdict::Fail);
        assert!(
            t[2].fix
                .as_ref()
                .unwrap()
                .contains("kubeadm:node-autoapprove-bootstrap"),
            "{:?}",
            t[2]
        );
        assert!(
            token_lines(&TokenAuth::Refused, "abcdef")[0]
                .fix
                .as_ref()
                .unwrap()
                .contains("kubejoin token create")
        );
    }

    #[test]
    fn a_review_without_a_verdict() {
        let refused = ApiError::Fetch(FetchError::Certificate {
            url: "https://10.0.0.1:6443".into(),
            detail: "is not issued by the CA".into(),
            out_of_validity: false,
        });
        let (l, why) = unanswered(&refused, "https://10.0.0.1:6443");
        assert_eq!((l.name.as_str(), l.verdict), ("trusted-tls", Verdict::Fail));
        assert!(l.fix.unwrap().contains("impersonating"));
        assert!(why.contains("no trusted connection"));
        let forbidden = ApiError::Status {
            method: "POST".into(),
            path: "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews".into(),
            status: 403,
            message: "forbidden".into(),
        };
        let (l, _) = unanswered(&forbidden, "https://10.0.0.1:6443");
        assert_eq!(
            (l.name.as_str(), l.verdict),
            ("token-review", Verdict::Warn)
        );
        assert!(l.fix.unwrap().contains("system:basic-user"));
    }

    #[test]
    fn pins_and_clocks() {
        let ca = ca();
        let right = CaPin::of(&ca[0]);
        assert_eq!(pin_line(&ca, &[right], false).verdict, Verdict::Ok);
        let wrong: CaPin = format!("sha256:{}", "00".repeat(32)).parse().unwrap();
        let l = pin_line(&ca, &[wrong], false);
        assert_eq!(l.verdict, Verdict::Fail);
        assert!(l.fix.unwrap().contains(&right.to_string()));
        assert_eq!(pin_line(&ca, &[], true).verdict, Verdict::Warn);

        let now = crate::clock::parse_cert_time(&ca[0].not_before).unwrap() + 86_400;
        assert_eq!(clock_line(now, Some(now + 5), &ca).verdict, Verdict::Ok);
        assert_eq!(clock_line(now, Some(now + 120), &ca).verdict, Verdict::Warn);
        assert_eq!(
            clock_line(now, Some(now + 3600), &ca).verdict,
            Verdict::Fail
        );
        assert_eq!(
            clock_line(now - 2 * 86_400, Some(now), &ca).verdict,
            Verdict::Fail
        );
    }
}
