//! kubeadm's token discovery: learn the cluster CA from `kube-public/cluster-info`
//! without trusting the network.
//!
//! 1. fetch cluster-info anonymously with TLS verification off;
//! 2. verify `jws-kubeconfig-<token id>` over `data.kubeconfig` with the token secret;
//! 3. check the kubeconfig's CA against the pins;
//! 4. fetch again trusting only that CA and require a byte-identical kubeconfig.
//!
//! The checks of each answer are pure functions ([`check_first`], [`check_second`]); the
//! loop in [`discover`] does the I/O, the retries and the deadline.

pub mod http;
pub mod retry;

use crate::cluster_info;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ClusterSettings;
use crate::endpoint::Endpoint;
use crate::jws::{self, JwsError};
use crate::kubeconfig::{self, ClusterInfo};
use crate::pin::{self, CaPin};
use crate::token::BootstrapToken;
use crate::x509::{self, CertInfo};
use http::{FetchError, Response};

/// A failure worth another try: the cluster may still be coming up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Transient {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{server} answered {status}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        server: String,
        status: u16,
        message: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("{server} answered with something that is not the cluster-info ConfigMap ({why})")]
    NotConfigMap { server: String, why: String },
    #[error("cluster-info has no data.kubeconfig")]
    NoKubeconfig,
    #[error("cluster-info has no signature for token id {token_id} (jws-kubeconfig-{token_id}){}",
        if signed.is_empty() { String::new() } else { format!("; it is signed for token ids: {}", signed.join(", ")) })]
    NoSignature {
        token_id: String,
        signed: Vec<String>,
    },
}

/// What to fix when kube-apiserver answers an anonymous read of cluster-info with
/// `status`, in the seed's terms and kubejoin's: discovery's retries, `kubejoin doctor`
/// and `kubejoin cluster prepare` say the same.
pub fn status_fix(status: u16) -> String {
    match status {
        401 => "kube-apiserver refuses anonymous requests: run it with --anonymous-auth=true (the default), \
                which discovery needs to read cluster-info; RBAC still limits anonymous users to what is bound to them"
            .into(),
        403 => "anonymous users may not read cluster-info: create a Role and RoleBinding for them, \
                `kubectl create role anonymous-for-cluster-info --resource=configmaps --resource-name=cluster-info \
                --namespace=kube-public --verb=get,list,watch` and `kubectl create rolebinding \
                anonymous-for-cluster-info-binding --role=anonymous-for-cluster-info --user=system:anonymous \
                --namespace=kube-public`, or run `kubejoin cluster prepare` on the control plane, which creates \
                them as kube-public/kubeadm:bootstrap-signer-clusterinfo"
            .into(),
        404 => "the ConfigMap kube-public/cluster-info does not exist: create it, \
                `kubectl -n kube-public create configmap cluster-info --from-file=kubeconfig=bootstrap-kubeconfig-public`, \
                or run `kubejoin cluster prepare` on the control plane"
            .into(),
        429 => "the API server is rate-limiting requests; kubejoin waits as long as it asks".into(),
        300..=399 => "configure the API server's own address: kube-apiserver does not redirect cluster-info, and \
                     kubejoin never follows a redirect, which could lead to another host"
            .into(),
        500.. => "the API server failed; check kube-apiserver's log".into(),
        _ => "check that the address is kube-apiserver's and not a proxy or another service".into(),
    }
}

impl Transient {
    /// What to fix, in the seed's terms.
    pub fn fix(&self) -> String {
        match self {
            Transient::Fetch(FetchError::Certificate { .. }) => {
                "the pinned CA does not vouch for this server; see the trust failure above".into()
            }
            Transient::Fetch(FetchError::Handshake { .. }) => {
                "whatever answers at this address presents a certificate whose key it does not hold: \
                 something between this node and the API server is relaying the real server's \
                 certificates; check the address and the network path"
                    .into()
            }
            Transient::Fetch(FetchError::TooLarge { .. }) => {
                "check that the address is kube-apiserver's and not a proxy or another service".into()
            }
            Transient::Fetch(FetchError::Ended { .. }) => {
                "the API server, or a load balancer in front of it, cut the answer short: check kube-apiserver's log \
                 and what stands between this node and it; kubejoin tries again until its deadline"
                    .into()
            }
            Transient::Fetch(_) => {
                "check that the API server address and port are right, that kube-apiserver is running, \
                 and that no firewall between this node and it drops that port"
                    .into()
            }
            Transient::Status { status, .. } => status_fix(*status),
            Transient::NotConfigMap { .. } => {
                "check that the address is kube-apiserver's and not a proxy or another service".into()
            }
            Transient::NoKubeconfig => {
                "create cluster-info with a kubeconfig key: \
                 `kubectl -n kube-public create configmap cluster-info --from-file=kubeconfig=bootstrap-kubeconfig-public`"
                    .into()
            }
            Transient::NoSignature { token_id, .. } => format!(
                "the bootstrap signer has not signed cluster-info for this token: run kube-controller-manager with \
                 --controllers=*,bootstrapsigner,tokencleaner; give the Secret kube-system/bootstrap-token-{token_id} \
                 usage-bootstrap-signing: \"true\"; and check that the token has not expired or been deleted \
                 (`kubectl -n kube-system get secret bootstrap-token-{token_id}`)"
            ),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Transient::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A failure that may be an attack: never retried.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TrustFailure {
    #[error("the cluster-info signature jws-kubeconfig-{token_id} does not verify: {cause}")]
    Signature { token_id: String, cause: JwsError },
    #[error("the cluster CA in cluster-info matches none of the configured pins: it is {}; configured: {}",
        seen.iter().map(|(p, cn)| format!("{p}{}", cn.as_ref().map(|c| format!(" (CN={c})")).unwrap_or_default())).collect::<Vec<_>>().join(", "),
        configured.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "))]
    PinMismatch {
        seen: Vec<(CaPin, Option<String>)>,
        configured: Vec<CaPin>,
    },
    #[error("cluster-info fetched over TLS pinned to its CA differs from the copy fetched first")]
    KubeconfigChanged,
    #[error(transparent)]
    Certificate(FetchError),
}

impl TrustFailure {
    pub fn fix(&self) -> String {
        match self {
            TrustFailure::Signature { token_id, .. } => format!(
                "either the token's secret is wrong (compare it with token-secret in the Secret \
                 kube-system/bootstrap-token-{token_id}), or something between this node and the API server \
                 altered cluster-info; kubejoin does not retry this"
            ),
            TrustFailure::PinMismatch { seen, .. } => format!(
                "if the control plane's CA really has this key (on the control plane: `openssl x509 -pubkey -in \
                 ca.crt | openssl pkey -pubin -outform der | sha256sum`), set ca_cert_hashes = [\"{}\"]; otherwise \
                 something is impersonating the API server; kubejoin does not retry this",
                seen.first().map(|(p, _)| p.to_string()).unwrap_or_default()
            ),
            TrustFailure::KubeconfigChanged => {
                "something between this node and the API server may be altering traffic, or cluster-info was \
                 edited during discovery; check the network path, then run kubejoin again"
                    .into()
            }
            TrustFailure::Certificate(FetchError::Certificate {
                out_of_validity: true,
                ..
            }) => {
                "the API server's serving certificate is outside its validity window: if this host's clock \
                 is right (`timedatectl`), renew the certificate on the control plane (`kubeadm certs renew \
                 apiserver` where kubeadm made it) and restart kube-apiserver"
                    .into()
            }
            TrustFailure::Certificate(_) => {
                "the server did not prove it holds a certificate from the pinned cluster CA for this address: \
                 if the address is not in the API server certificate's names, configure one that is; \
                 otherwise something is impersonating the API server"
                    .into()
            }
        }
    }
}

/// Why discovery stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    #[error(
        "discovery gave up after {:.1}s (timeout {timeout_s}s) and {attempts} attempts; last error: {last}",
        f64::from(*waited_ms) / 1000.0
    )]
    TimedOut {
        timeout_s: u32,
        /// How long it really waited.
        waited_ms: u32,
        attempts: u32,
        last: Transient,
    },
    #[error("trust failure: {0}")]
    Trust(#[from] TrustFailure),
    #[error("cluster-info is signed but unusable: {0}")]
    Unusable(String),
    #[error(
        "cluster-info has no signature for token id {token_id}, and the API server at {server} refuses the token \
             (401 Unauthorized): it is unknown, expired or deleted, or single-use and burned by the node that joined with it"
    )]
    TokenRefused { server: String, token_id: String },
}

impl DiscoveryError {
    pub fn fix(&self) -> String {
        match self {
            DiscoveryError::TimedOut { last, .. } => last.fix(),
            DiscoveryError::Trust(t) => t.fix(),
            DiscoveryError::Unusable(_) => {
                "recreate cluster-info from a kubeconfig with exactly one cluster, its https server and \
                 embedded certificate-authority-data (`kubectl config set-cluster --embed-certs=true`)"
                    .into()
            }
            DiscoveryError::TokenRefused { token_id, .. } => format!(
                "create a new token on the control plane (`kubejoin token create`, or `kubeadm token create`; \
                 a single-use token joins one node) and give it to this node (token_file or token in /etc/kubejoin/config.toml), then start kubejoin \
                 again; if `kubectl -n kube-system get secret bootstrap-token-{token_id}` still shows this one, \
                 check its expiration and usage-bootstrap-authentication: \"true\", and that kube-apiserver runs \
                 with --enable-bootstrap-token-auth=true"
            ),
        }
    }
}

/// Why one answer was not taken: try again, or stop.
#[derive(Debug)]
pub enum Rejection {
    Retry(Transient),
    Stop(DiscoveryError),
}

impl From<Transient> for Rejection {
    fn from(t: Transient) -> Self {
        Rejection::Retry(t)
    }
}

impl From<TrustFailure> for Rejection {
    fn from(t: TrustFailure) -> Self {
        Rejection::Stop(DiscoveryError::Trust(t))
    }
}

#[derive(Deserialize)]
struct Status {
    message: Option<String>,
}

/// Reads an HTTP answer as the cluster-info ConfigMap's data.
pub fn configmap_data(
    server: &Endpoint,
    resp: &Response,
) -> Result<std::collections::BTreeMap<String, String>, Transient> {
    if resp.status != 200 {
        let message = match &resp.location {
            Some(to) if (300..400).contains(&resp.status) => Some(format!(
                "a redirect to {to}, which kubejoin does not follow"
            )),
            _ => serde_json::from_slice::<Status>(&resp.body)
                .ok()
                .and_then(|s| s.message),
        };
        return Err(Transient::Status {
            server: server.to_string(),
            status: resp.status,
            message,
            retry_after: resp.retry_after,
        });
    }
    let not = |why: String| Transient::NotConfigMap {
        server: server.to_string(),
        why,
    };
    cluster_info::data(&resp.body).map_err(not)
}

/// What the first fetch established.
#[derive(Debug, Clone)]
pub struct Verified {
    pub kubeconfig: String,
    pub cluster: ClusterInfo,
    pub ca: Vec<CertInfo>,
    pub matched_pin: Option<CaPin>,
}

/// Checks the answer to the first, untrusted fetch: signature, kubeconfig, pins.
pub fn check_first(
    server: &Endpoint,
    resp: &Response,
    token: &BootstrapToken,
    pins: &[CaPin],
) -> Result<Verified, Rejection> {
    let data = configmap_data(server, resp)?;
    let kubeconfig = data
        .get("kubeconfig")
        .filter(|k| !k.is_empty())
        .ok_or(Transient::NoKubeconfig)?;
    let key = cluster_info::signature_key(token.id());
    let Some(signature) = data.get(&key).filter(|s| !s.is_empty()) else {
        let signed = cluster_info::signed_ids(data.keys().map(String::as_str));
        return Err(Transient::NoSignature {
            token_id: token.id().to_string(),
            signed,
        }
        .into());
    };
    jws::verify_detached(
        signature,
        kubeconfig.as_bytes(),
        token.id(),
        token.secret().as_bytes(),
    )
    .map_err(|cause| TrustFailure::Signature {
        token_id: token.id().to_string(),
        cause,
    })?;

    let unusable = |e: String| Rejection::Stop(DiscoveryError::Unusable(e));
    let cluster =
        kubeconfig::parse_cluster_info(kubeconfig).map_err(|e| unusable(e.to_string()))?;
    let ca = x509::parse_pem_bundle(&cluster.ca_pem)
        .map_err(|e| unusable(format!("its certificate-authority-data: {e}")))?;
    let matched_pin = if pins.is_empty() {
        None
    } else {
        let cert = pin::find_match(pins, &ca).ok_or_else(|| TrustFailure::PinMismatch {
            seen: ca
                .iter()
                .map(|c| (CaPin::of(c), c.subject_cn.clone()))
                .collect(),
            configured: pins.to_vec(),
        })?;
        Some(CaPin::of(cert))
    };
    Ok(Verified {
        kubeconfig: kubeconfig.clone(),
        cluster,
        ca,
        matched_pin,
    })
}

/// Checks the answer to the second fetch, made over TLS pinned to the verified CA.
pub fn check_second(
    server: &Endpoint,
    resp: &Response,
    token: &BootstrapToken,
    first: &Verified,
) -> Result<(), Rejection> {
    let data = configmap_data(server, resp)?;
    let key = cluster_info::signature_key(token.id());
    if data.get(&key).is_none_or(|s| s.is_empty()) {
        return Err(Transient::NoSignature {
            token_id: token.id().to_string(),
            signed: Vec::new(),
        }
        .into());
    }
    match data.get("kubeconfig") {
        Some(k) if k.as_bytes() == first.kubeconfig.as_bytes() => Ok(()),
        _ => Err(TrustFailure::KubeconfigChanged.into()),
    }
}

/// Whether the API server refuses the token, asked once cluster-info turned out to have no
/// signature for it (a deleted or expired token loses its signature; a new one waits for
/// the signer): `Some(true)` on a 401, `Some(false)` when it authenticates the token (the
/// signer lags), `None` when it cannot be asked safely. The token is only ever sent over
/// TLS trusting cluster-info's CA, and only when that CA matches a configured pin: never
/// to a server not proven to be the cluster's.
pub async fn token_refused(
    server: &Endpoint,
    resp: &Response,
    token: &BootstrapToken,
    pins: &[CaPin],
) -> Option<bool> {
    if pins.is_empty() {
        return None;
    }
    let data = configmap_data(server, resp).ok()?;
    let cluster = kubeconfig::parse_cluster_info(data.get("kubeconfig")?).ok()?;
    let ca = x509::parse_pem_bundle(&cluster.ca_pem).ok()?;
    pin::find_match(pins, &ca)?;
    let ders: Vec<Vec<u8>> = ca.iter().map(|c| c.der.clone()).collect();
    let client = http::pinned_client(&ders).ok()?;
    let url = format!("{server}/version");
    let bearer = token.expose();
    let req = http::Request {
        bearer: Some(&bearer),
        ..http::Request::get(&url)
    };
    let answer = http::request(&client, req, Duration::from_secs(10))
        .await
        .ok()?;
    Some(answer.status == 401)
}

/// A CA certificate, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct CaSummary {
    pub pin: CaPin,
    pub subject_cn: Option<String>,
    pub not_before: String,
    pub not_after: String,
}

/// What discovery learned.
#[derive(Debug, Clone, Serialize)]
pub struct Discovered {
    /// The server to put in the bootstrap kubeconfig.
    pub server: Endpoint,
    /// The configured endpoint that answered.
    pub queried: Endpoint,
    /// The server named inside cluster-info.
    pub cluster_info_server: Endpoint,
    /// Whether the CA was checked against a pin (false only with unsafe_skip_ca_verification).
    pub pinned: bool,
    pub matched_pin: Option<CaPin>,
    pub ca: Vec<CaSummary>,
    #[serde(skip)]
    pub ca_pem: Vec<u8>,
    pub kubeconfig_sha256: String,
    /// Seconds this host's clock is ahead of the API server's, when off by over a minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_skew_s: Option<i64>,
    pub attempts: u32,
    pub elapsed_ms: u128,
}

/// The most time the last try before the deadline is given to answer in (a tenth of the
/// timeout when that is less).
pub const LAST_TRY: Duration = Duration::from_secs(1);

/// The delay before the next try, cut short so that the try starts at least `last_try`
/// before the deadline; `None` when there is not that much left (pure).
pub fn delay_within(
    now: Instant,
    delay: Duration,
    deadline: Instant,
    last_try: Duration,
) -> Option<Duration> {
    let latest_start = deadline.checked_sub(last_try)?;
    let left = latest_start.checked_duration_since(now)?;
    (!left.is_zero()).then(|| delay.min(left))
}

fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Fetches and checks cluster-info until it succeeds, fails for good, or the timeout
/// passes. Servers are tried in turn.
pub async fn discover(
    settings: &ClusterSettings,
    token: &BootstrapToken,
) -> Result<Discovered, DiscoveryError> {
    let started = Instant::now();
    let deadline = started + settings.discovery_timeout;
    let mut backoff = retry::Backoff::for_discovery();
    let mut attempts = 0u32;
    let untrusted = http::untrusted_client();
    let pins = &settings.ca_cert_hashes;

    // Sleeps before the next try; a delay that would pass the deadline is cut short so
    // that the last try comes just before it, with up to LAST_TRY to answer in. Gives up with the
    // last error once no such try fits.
    let mut wait = async |last: Transient, attempts: u32| -> Result<(), DiscoveryError> {
        let delay = backoff.next_delay(last.retry_after(), retry::random_unit());
        let now = Instant::now();
        let last_try = (settings.discovery_timeout / 10).min(LAST_TRY);
        let Some(delay) = delay_within(now, delay, deadline, last_try) else {
            return Err(DiscoveryError::TimedOut {
                timeout_s: u32::try_from(settings.discovery_timeout.as_secs()).unwrap_or(u32::MAX),
                waited_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
                attempts,
                last,
            });
        };
        tracing::info!(
            phase = "discovery",
            delay_ms = delay.as_millis() as u64,
            "retrying in {} ms",
            delay.as_millis()
        );
        tokio::time::sleep(delay).await;
        Ok(())
    };

    // Phase 1: the untrusted fetch, verified by signature and pin.
    let mut last_logged: Option<String> = None;
    // Whether the API server was asked about the token (once, on the first missing
    // signature whose CA a pin vouches for).
    let mut token_asked = false;
    let (server, verified, server_date, presented) = loop {
        let server = &settings.servers[attempts as usize % settings.servers.len()];
        attempts += 1;
        tracing::info!(phase = "discovery", server = %server, attempt = attempts, "fetching cluster-info from {server} (untrusted TLS, anonymous), attempt {attempts}");
        let outcome = match http::get_cluster_info(&untrusted, server, remaining(deadline)).await {
            Ok(resp) => {
                let checked = check_first(server, &resp, token, pins);
                if !token_asked
                    && matches!(
                        checked,
                        Err(Rejection::Retry(Transient::NoSignature { .. }))
                    )
                {
                    match token_refused(server, &resp, token, pins).await {
                        Some(true) => {
                            return Err(DiscoveryError::TokenRefused {
                                server: server.to_string(),
                                token_id: token.id().to_string(),
                            });
                        }
                        Some(false) => {
                            token_asked = true;
                            tracing::info!(phase = "discovery", server = %server, "the API server accepts token id {}: waiting for the bootstrap signer to sign cluster-info for it", token.id());
                        }
                        None => {}
                    }
                }
                checked.map(|v| (v, resp.date, resp.presented))
            }
            Err(e) => Err(Rejection::Retry(e.into())),
        };
        match outcome {
            Ok((v, date, presented)) => break (server.clone(), v, date, presented),
            Err(Rejection::Stop(e)) => return Err(e),
            Err(Rejection::Retry(t)) => {
                // The fix is logged when the error first appears, not on every retry.
                let message = t.to_string();
                if last_logged.as_ref() != Some(&message) {
                    tracing::warn!(phase = "discovery", server = %server, attempt = attempts, "cluster-info not usable yet: {t}; fix: {}", t.fix());
                } else {
                    tracing::warn!(phase = "discovery", server = %server, attempt = attempts, "cluster-info not usable yet: {t}");
                }
                last_logged = Some(message);
                wait(t, attempts).await?;
            }
        }
    };
    // A wrong clock here turns into confusing certificate errors later: say so now.
    let local = crate::clock::unix_now();
    let clock_skew_s = server_date.and_then(|d| crate::clock::skew_warning(local, d));
    if let Some((skew, warning)) = &clock_skew_s {
        tracing::warn!(phase = "discovery", skew_s = skew, "{warning}");
    }
    for ca in &verified.ca {
        if let Some(warning) =
            crate::clock::ca_validity_warning(local, &ca.not_before, &ca.not_after)
        {
            tracing::warn!(phase = "discovery", "{warning}");
        }
    }
    match &verified.matched_pin {
        Some(pin) => {
            tracing::info!(phase = "discovery", server = %server, pin = %pin, "signature of token id {} verified; CA matches pin {pin}", token.id())
        }
        None => tracing::warn!(
            phase = "discovery",
            server = %server,
            "signature verified; CA NOT pinned (unsafe_skip_ca_verification)"
        ),
    }

    // Phase 2: prove that the server's certificate comes from the verified CA. kubeadm
    // fetches cluster-info again over TLS that trusts only that CA; the chain the first
    // connection presented (its handshake signed with the leaf's key) gives the same
    // proof without a request. Both are skipped when no pin was given, as kubeadm does.
    let ders: Vec<Vec<u8>> = verified.ca.iter().map(|c| c.der.clone()).collect();
    let one_fetch = !settings.pinned_refetch && !presented.is_empty();
    if verified.matched_pin.is_some() && one_fetch {
        let url = format!("{server}{}", cluster_info::PATH);
        http::verify_presented(&ders, &presented, &url, &server.host_name())
            .map_err(|e| DiscoveryError::Trust(TrustFailure::Certificate(e)))?;
        tracing::info!(phase = "discovery", server = %server, "the certificate {server} presented is issued by the cluster CA, for this server, and valid now");
    } else if verified.matched_pin.is_some() {
        if !settings.pinned_refetch {
            tracing::warn!(phase = "discovery", server = %server, "the certificate {server} presented was not kept; proving it with a second fetch over pinned TLS");
        }
        let pinned = http::pinned_client(&ders).map_err(DiscoveryError::Unusable)?;
        loop {
            attempts += 1;
            tracing::info!(phase = "discovery", server = %server, attempt = attempts, "fetching cluster-info again over TLS pinned to the cluster CA, attempt {attempts}");
            let outcome = match http::get_cluster_info(&pinned, &server, remaining(deadline)).await
            {
                Ok(resp) => check_second(&server, &resp, token, &verified),
                Err(e @ FetchError::Certificate { .. }) => Err(TrustFailure::Certificate(e).into()),
                Err(e) => Err(Rejection::Retry(e.into())),
            };
            match outcome {
                Ok(()) => break,
                Err(Rejection::Stop(e)) => return Err(e),
                Err(Rejection::Retry(t)) => {
                    tracing::warn!(phase = "discovery", server = %server, attempt = attempts, "pinned re-fetch failed: {t}");
                    wait(t, attempts).await?;
                }
            }
        }
    }

    let inside = verified.cluster.server.clone();
    let use_server = if inside != server {
        if settings.use_configured_server {
            tracing::warn!(phase = "discovery", configured = %server, cluster_info = %inside, "cluster-info names {inside}, not {server}; using {server} (use_configured_server = true)");
            server.clone()
        } else {
            tracing::warn!(phase = "discovery", configured = %server, cluster_info = %inside, "cluster-info names {inside}, not {server}; using {inside}, as kubeadm does (set use_configured_server = true to keep {server})");
            inside.clone()
        }
    } else {
        server.clone()
    };
    let elapsed = started.elapsed();
    tracing::info!(phase = "discovery", server = %use_server, elapsed_ms = elapsed.as_millis() as u64, "discovery done in {} ms: API server {use_server}", elapsed.as_millis());
    Ok(Discovered {
        server: use_server,
        queried: server,
        cluster_info_server: inside,
        pinned: verified.matched_pin.is_some(),
        matched_pin: verified.matched_pin,
        ca: verified
            .ca
            .iter()
            .map(|c| CaSummary {
                pin: CaPin::of(c),
                subject_cn: c.subject_cn.clone(),
                not_before: c.not_before.clone(),
                not_after: c.not_after.clone(),
            })
            .collect(),
        ca_pem: verified.cluster.ca_pem,
        kubeconfig_sha256: Sha256::digest(verified.kubeconfig.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        clock_skew_s: clock_skew_s.map(|(s, _)| s),
        attempts,
        elapsed_ms: elapsed.as_millis(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn fixture() -> Value {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/vectors/cluster-info-kubeadm-discovery.json"
        ))
        .unwrap()
    }

    fn server() -> Endpoint {
        "https://127.0.0.1:6443".parse().unwrap()
    }

    fn answer(name: &str, data: &Value) -> Response {
        let body = json!({
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "kube-public"},
            "data": data,
        });
        Response::with_body(200, serde_json::to_vec(&body).unwrap())
    }

    /// The data a scenario serves: the fixture's, or the keys it lists.
    fn data_of(f: &Value, served: &Value) -> Value {
        match served {
            Value::String(s) if s == "fixture" || s == "<fixture configmap_data>" => {
                f["configmap_data"].clone()
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = if v == "<fixture kubeconfig>" {
                            f["configmap_data"]["kubeconfig"].clone()
                        } else {
                            v.clone()
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            other => panic!("unknown configmap shape {other}"),
        }
    }

    fn pins_of(case: &Value) -> Result<Vec<CaPin>, (usize, pin::PinError)> {
        let pins: Vec<String> = case["ca_cert_hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        pin::parse_all(&pins)
    }

    /// Runs a scenario through the pure checks, as the discovery loop would, and names
    /// the outcome with the vectors' error kinds.
    fn run(f: &Value, case: &Value) -> Result<Verified, &'static str> {
        let token: BootstrapToken = case["token"]
            .as_str()
            .unwrap()
            .parse()
            .map_err(|_| "invalid-token-format")?;
        let pins = pins_of(case).map_err(|_| "invalid-ca-cert-hash")?;
        let cm = &case["configmap"];
        // Answers in order; the last one repeats until the timeout.
        let answers: Vec<Response> = if let Some(initial) = cm.get("initial") {
            vec![
                answer("cluster-info", &data_of(f, initial)),
                answer("cluster-info", &data_of(f, &cm["after_60ms"])),
            ]
        } else if let Some(name) = cm.get("name") {
            // Only a ConfigMap of another name exists: the API server answers 404 for
            // cluster-info, and a misrouted answer with the other name is not taken either.
            assert_ne!(name, "cluster-info");
            let other = answer(name.as_str().unwrap(), &data_of(f, &cm["data"]));
            assert!(matches!(
                check_first(&server(), &other, &token, &pins),
                Err(Rejection::Retry(Transient::NotConfigMap { .. }))
            ));
            vec![Response::with_body(404, br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"cluster-info\" not found","reason":"NotFound","details":{"name":"cluster-info","kind":"configmaps"},"code":404}"#.to_vec())]
        } else {
            vec![answer("cluster-info", &data_of(f, cm))]
        };
        let mut last = None;
        for resp in answers
            .iter()
            .chain(std::iter::repeat_n(answers.last().unwrap(), 3))
        {
            match check_first(&server(), resp, &token, &pins) {
                Ok(v) => {
                    if v.matched_pin.is_some() {
                        // The pinned re-fetch sees the same answer.
                        check_second(&server(), resp, &token, &v).map_err(|_| "second")?;
                    }
                    return Ok(v);
                }
                Err(Rejection::Stop(DiscoveryError::Trust(TrustFailure::Signature { .. }))) => {
                    return Err("signature-invalid");
                }
                Err(Rejection::Stop(DiscoveryError::Trust(TrustFailure::PinMismatch {
                    ..
                }))) => {
                    return Err("ca-pin-mismatch");
                }
                Err(Rejection::Stop(e)) => panic!("unexpected {e}"),
                Err(Rejection::Retry(t)) => last = Some(t),
            }
        }
        match last {
            Some(Transient::NoSignature { .. }) => Err("signature-missing-after-timeout"),
            Some(Transient::Status { status: 404, .. }) => Err("configmap-not-found-after-timeout"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_last_try_comes_just_before_the_deadline() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let deadline = now + Duration::from_secs(12);
        // A delay that fits is kept; one that would pass the deadline is cut short.
        assert_eq!(
            delay_within(now, 4 * second, deadline, second),
            Some(4 * second)
        );
        assert_eq!(
            delay_within(now + 6 * second, 8 * second, deadline, second),
            Some(5 * second)
        );
        // Less than the last try's time left: give up.
        assert_eq!(
            delay_within(
                now + Duration::from_millis(11_500),
                second,
                deadline,
                second
            ),
            None
        );
        assert_eq!(
            delay_within(now + 13 * second, second, deadline, second),
            None
        );
    }

    #[test]
    fn every_kubeadm_discovery_scenario() {
        let f = fixture();
        let scenarios = f["scenarios"].as_array().unwrap();
        assert!(!scenarios.is_empty());
        for case in scenarios {
            let id = case["id"].as_str().unwrap();
            let got = run(&f, case);
            match case["expected"].as_str().unwrap() {
                "success" => {
                    let v = got.unwrap_or_else(|e| panic!("{id}: {e}"));
                    assert_eq!(v.kubeconfig, f["configmap_data"]["kubeconfig"], "{id}");
                    assert_eq!(
                        v.cluster.ca_pem,
                        f["ca_certificate_pem"].as_str().unwrap().as_bytes(),
                        "{id}"
                    );
                    let facts = &f["kubeconfig_facts"];
                    assert_eq!(v.cluster.name, facts["cluster_name"], "{id}");
                    assert_eq!(
                        v.cluster.server,
                        facts["server"]
                            .as_str()
                            .unwrap()
                            .parse::<Endpoint>()
                            .unwrap()
                    );
                    let pinned = !case["ca_cert_hashes"].as_array().unwrap().is_empty();
                    assert_eq!(v.matched_pin.is_some(), pinned, "{id}");
                    if pinned {
                        assert_eq!(
                            v.matched_pin.unwrap().to_string(),
                            f["ca_cert_hash"].as_str().unwrap()
                        );
                    }
                }
                _ => assert_eq!(
                    got.map(|_| ()),
                    Err(case["expected_error"].as_str().unwrap()),
                    "{id}"
                ),
            }
        }
    }

    fn capture(name: &str) -> Response {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/real-apiserver/"
        );
        let headers = std::fs::read_to_string(format!("{dir}{name}.headers")).unwrap();
        let status = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
        Response::with_body(status, std::fs::read(format!("{dir}{name}.json")).unwrap())
    }

    fn real_pin() -> Vec<CaPin> {
        vec![
            include_str!("../../tests/fixtures/real-apiserver/ca-hash.txt")
                .trim()
                .parse()
                .unwrap(),
        ]
    }

    const TOKEN1: &str = "0ve35r.l8o5vx90ot05g17z";
    const TOKEN2: &str = "c46dzr.hk5w0sqna1wokaou";
    const TOKEN3: &str = "fsmuhy.kk87h0om7xqwprmx";
    const TOKEN4: &str = "2nkfsy.9aiw1mx4223r3rmg";
    const TOKEN5: &str = "acpenu.kkzxwq9h5y9aiwvv";

    fn first(capture_name: &str, token: &str) -> Result<Verified, Rejection> {
        check_first(
            &server(),
            &capture(capture_name),
            &token.parse().unwrap(),
            &real_pin(),
        )
    }

    #[test]
    fn real_apiserver_captures_verify_for_the_signed_tokens() {
        for (name, tokens) in [
            ("01-cluster-info-anon-token1", vec![TOKEN1]),
            ("02-cluster-info-anon-token1-token2", vec![TOKEN1, TOKEN2]),
            (
                "03-cluster-info-anon-token1-token2-token3",
                vec![TOKEN1, TOKEN2, TOKEN3],
            ),
            (
                "06-cluster-info-anon-with-token5-before-expiry",
                vec![TOKEN1, TOKEN2, TOKEN5],
            ),
            (
                "08-cluster-info-anon-curl-default-ua-pretty",
                vec![TOKEN1, TOKEN2],
            ),
        ] {
            for token in tokens {
                let v = first(name, token).unwrap_or_else(|e| panic!("{name} {token}: {e:?}"));
                assert_eq!(v.cluster.server, server());
                assert_eq!(v.matched_pin, Some(real_pin()[0]));
                check_second(&server(), &capture(name), &token.parse().unwrap(), &v).unwrap();
            }
        }
    }

    #[test]
    fn real_apiserver_captures_without_a_signature_are_retried() {
        for (name, token) in [
            ("00-cluster-info-anon-no-token", TOKEN1),
            ("04-cluster-info-anon-after-token3-deleted", TOKEN3),
            ("05-cluster-info-anon-after-token4-nosigning", TOKEN4),
            ("07-cluster-info-anon-after-token5-expired", TOKEN5),
        ] {
            match first(name, token) {
                Err(Rejection::Retry(t @ Transient::NoSignature { .. })) => {
                    assert!(t.fix().contains("bootstrapsigner"), "{t}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_wrong_secret_is_a_trust_failure() {
        let wrong = "0ve35r.l8o5vx90ot05g17y";
        assert!(matches!(
            first("01-cluster-info-anon-token1", wrong),
            Err(Rejection::Stop(DiscoveryError::Trust(
                TrustFailure::Signature { .. }
            )))
        ));
    }

    #[test]
    fn real_status_objects_are_retried_with_the_control_plane_fix() {
        let resp = capture("10-bearer-token1-valid-cluster-info");
        match check_first(&server(), &resp, &TOKEN1.parse().unwrap(), &real_pin()) {
            Err(Rejection::Retry(t @ Transient::Status { status: 403, .. })) => {
                assert!(t.to_string().contains("forbidden"), "{t}");
                assert!(t.fix().contains("anonymous-for-cluster-info"), "{t}");
            }
            other => panic!("{other:?}"),
        }
        let resp = capture("12-bearer-unknown-token-id");
        match check_first(&server(), &resp, &TOKEN1.parse().unwrap(), &real_pin()) {
            Err(Rejection::Retry(t @ Transient::Status { status: 401, .. })) => {
                assert!(t.fix().contains("--anonymous-auth"), "{t}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_changed_kubeconfig_on_the_second_fetch_is_a_trust_failure() {
        let token: BootstrapToken = TOKEN1.parse().unwrap();
        let v = first("01-cluster-info-anon-token1", TOKEN1).unwrap();
        let mut data: Value =
            serde_json::from_slice(&capture("01-cluster-info-anon-token1").body).unwrap();
        let changed = format!("{}\n", data["data"]["kubeconfig"].as_str().unwrap());
        data["data"]["kubeconfig"] = changed.into();
        let resp = answer("cluster-info", &data["data"]);
        assert!(matches!(
            check_second(&server(), &resp, &token, &v),
            Err(Rejection::Stop(DiscoveryError::Trust(
                TrustFailure::KubeconfigChanged
            )))
        ));
    }

    #[test]
    fn a_pin_mismatch_prints_the_pin_seen() {
        let other: CaPin = format!("sha256:{}", "00".repeat(32)).parse().unwrap();
        let err = check_first(
            &server(),
            &capture("01-cluster-info-anon-token1"),
            &TOKEN1.parse().unwrap(),
            &[other],
        )
        .unwrap_err();
        let Rejection::Stop(DiscoveryError::Trust(t)) = err else {
            panic!("{err:?}")
        };
        let seen = real_pin()[0].to_string();
        assert!(t.to_string().contains(&seen), "{t}");
        assert!(t.fix().contains(&seen), "{}", t.fix());
    }

    #[test]
    fn signed_but_unusable_kubeconfig_stops() {
        let token: BootstrapToken = TOKEN1.parse().unwrap();
        let kubeconfig = "apiVersion: v1\nclusters:\n- name: ''\n  cluster: {server: 'https://127.0.0.1:6443'}\n";
        let sig = jws::sign_detached(kubeconfig.as_bytes(), token.id(), token.secret().as_bytes());
        let resp = answer(
            "cluster-info",
            &json!({"kubeconfig": kubeconfig, "jws-kubeconfig-0ve35r": sig}),
        );
        assert!(matches!(
            check_first(&server(), &resp, &token, &real_pin()),
            Err(Rejection::Stop(DiscoveryError::Unusable(_)))
        ));
    }
}
