//! The two HTTPS clients of discovery: the untrusted first fetch (any certificate, but
//! handshake signatures still checked, and the chain presented kept for a later check
//! against the CA) and the pinned second fetch (only the cluster CA). Both are
//! anonymous in discovery: no `Authorization` header is sent there. The same clients,
//! with [`request`], carry the bootstrap token of `kubejoin doctor` and the admin
//! credentials of `kubejoin cluster` and `kubejoin token`, always over verified TLS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::endpoint::Endpoint;

/// kubeadm's API clients time out each request after 10 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A ConfigMap is at most 1 MiB; anything much larger is not cluster-info.
pub const MAX_BODY: usize = 2 << 20;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The server's `Date` header, as Unix seconds.
    pub date: Option<i64>,
    /// A redirect's `Location`, which is never followed.
    pub location: Option<String>,
    pub body: Vec<u8>,
    /// The certificate chain (DER, leaf first) the server presented on the connection
    /// that carried this answer, when the client keeps it (the untrusted one does); its
    /// handshake signature was verified with the leaf's key.
    pub presented: Vec<Vec<u8>>,
}

impl Response {
    /// An answer with only a status and a body, as a test or a fuzz target makes one.
    pub fn with_body(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            retry_after: None,
            date: None,
            location: None,
            body,
            presented: Vec::new(),
        }
    }
}

/// A request that did not produce an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("{url} did not answer within {ms} ms")]
    Timeout { url: String, ms: u128 },
    /// The server's certificate was refused by the cluster CA; `out_of_validity`: only
    /// because of its validity window (expired, or not valid yet).
    #[error("the server at {url} presented a certificate that {detail}")]
    Certificate {
        url: String,
        detail: String,
        out_of_validity: bool,
    },
    #[error("the request to {url} failed: {detail}")]
    Other { url: String, detail: String },
    /// The server ended the answer early: HTTP/2 GOAWAY or a stream reset.
    #[error("{url} ended the answer early: {detail}")]
    Ended { url: String, detail: String },
    #[error("the answer from {url} was larger than {MAX_BODY} bytes")]
    TooLarge { url: String },
    /// The handshake was not signed with the key of the certificate presented.
    #[error("the server at {url} failed the TLS handshake: {detail}")]
    Handshake { url: String, detail: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any certificate chain, but still verifies that the server holds the key of the
/// certificate it sent. Used once, for the first, untrusted fetch of cluster-info.
/// It keeps the chain presented, for [`verify_presented`] once the CA is known.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
    presented: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.presented.lock().unwrap_or_else(|p| p.into_inner()) = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.to_vec())
            .collect();
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Wraps the WebPKI verifier of the pinned client and remembers why it refused a
/// certificate, so that a refusal is told apart from a network error whatever layers
/// of hyper and reqwest wrap it.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    refused: Arc<Mutex<Option<rustls::CertificateError>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if let Err(rustls::Error::InvalidCertificate(e)) = &result {
            *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// An anonymous HTTPS client; for the pinned one, with the verifier's last refusal; for
/// the untrusted one, with the chain its last handshake was presented.
pub struct Client {
    http: reqwest::Client,
    refused: Option<Arc<Mutex<Option<rustls::CertificateError>>>>,
    presented: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
}

/// Every client of kubejoin's: its TLS, bounded waits, no redirects, and no proxy. A
/// proxy in the environment (HTTPS_PROXY and the like, for the internet) never carries a
/// request to the API server, which nodes reach directly.
fn client(mut tls: rustls::ClientConfig) -> reqwest::ClientBuilder {
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(tls)
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kubejoin/", env!("CARGO_PKG_VERSION")))
}

fn build(builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder
        .build()
        .expect("a client with a preconfigured rustls config builds")
}

/// The client for the first fetch: no certificate verification, no credentials.
pub fn untrusted_client() -> Client {
    let provider = provider();
    let presented = Arc::new(Mutex::new(Vec::new()));
    let verifier = AcceptAnyCertificate {
        algorithms: provider.signature_verification_algorithms,
        presented: presented.clone(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Client {
        // tls_info: the answer tells the leaf of the connection that carried it (a
        // connection may be reused across tries, with no new handshake); the chain kept
        // counts only if its leaf is that one.
        http: build(client(tls).tls_info(true)),
        refused: None,
        presented: Some(presented),
    }
}

/// WebPKI's verifier of server certificates, trusting only the given CA certificates.
fn ca_verifier(
    ca: &[Vec<u8>],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<rustls::client::WebPkiServerVerifier>, String> {
    let unusable = |e: &dyn std::fmt::Display| {
        format!("the CA certificate cannot be used as a trust anchor: {e}")
    };
    let mut roots = rustls::RootCertStore::empty();
    for der in ca {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| unusable(&e))?;
    }
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| unusable(&e))
}

/// The client for the second fetch: trusts only the given CA certificates.
pub fn pinned_client(ca: &[Vec<u8>]) -> Result<Client, String> {
    pinned_client_as(ca, None)
}

/// A client that trusts only the given CA certificates and, with `identity` (a
/// certificate chain and its key), authenticates with it: kubelet's own credentials,
/// to read the Node kubelet registered.
pub fn pinned_client_as(
    ca: &[Vec<u8>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Client, String> {
    let provider = provider();
    let inner = ca_verifier(ca, provider.clone())?;
    let refused = Arc::new(Mutex::new(None));
    let verifier = RecordingVerifier {
        inner,
        refused: refused.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let tls = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the client certificate cannot be used: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Client {
        http: build(client(tls)),
        refused: Some(refused),
        presented: None,
    })
}

/// `GET <endpoint>/api/v1/namespaces/kube-public/configmaps/cluster-info`, anonymously.
/// `timeout` bounds the whole request, body included (at most [`REQUEST_TIMEOUT`]).
pub async fn get_cluster_info(
    client: &Client,
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<Response, FetchError> {
    get(
        client,
        &format!("{endpoint}{}", crate::cluster_info::PATH),
        timeout,
    )
    .await
}

/// `GET url` for JSON, with `timeout` bounding the whole request, body included (at most
/// [`REQUEST_TIMEOUT`]), and the body limited to [`MAX_BODY`].
pub async fn get(client: &Client, url: &str, timeout: Duration) -> Result<Response, FetchError> {
    request(client, Request::get(url), timeout).await
}

/// A request of the API clients beyond discovery (`kubejoin cluster`, `token`, `doctor`):
/// a method, a URL, a JSON body, and a bearer token (the bootstrap token or the admin
/// kubeconfig's), sent marked sensitive so that no debug output shows it.
pub struct Request<'a> {
    pub method: reqwest::Method,
    pub url: &'a str,
    pub json: Option<Vec<u8>>,
    pub bearer: Option<&'a str>,
}

impl<'a> Request<'a> {
    pub fn get(url: &'a str) -> Request<'a> {
        Request {
            method: reqwest::Method::GET,
            url,
            json: None,
            bearer: None,
        }
    }
}

/// Sends `req` with `timeout` bounding the whole request, body included (at most
/// [`REQUEST_TIMEOUT`]), and the answer's body limited to [`MAX_BODY`].
pub async fn request(
    client: &Client,
    req: Request<'_>,
    timeout: Duration,
) -> Result<Response, FetchError> {
    let url = req.url.to_string();
    let timeout = timeout.min(REQUEST_TIMEOUT);
    let classify = |e: reqwest::Error| {
        let refused = client
            .refused
            .as_ref()
            .and_then(|r| r.lock().unwrap_or_else(|p| p.into_inner()).take());
        classify(&url, &e, timeout, refused)
    };
    let mut builder = client
        .http
        .request(req.method, &url)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(timeout);
    if let Some(token) = req.bearer {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| FetchError::Other {
                url: url.clone(),
                detail: "the bearer token is not a valid header value".into(),
            })?;
        value.set_sensitive(true);
        builder = builder.header(reqwest::header::AUTHORIZATION, value);
    }
    if let Some(body) = req.json {
        builder = builder
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    let mut resp = builder.send().await.map_err(classify)?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, crate::clock::unix_now()));
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::clock::parse_http_date);
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let leaf = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec);
    let presented = match (&client.presented, leaf) {
        (Some(kept), Some(leaf)) => {
            // The last handshake's chain, if its leaf is this connection's (whose
            // handshake signature was verified with that leaf's key); else none, and the
            // caller proves the certificate another way.
            let chain = kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if chain.first() == Some(&leaf) {
                chain
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    };
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::TooLarge { url });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        retry_after,
        date,
        location,
        body,
        presented,
    })
}

/// Verifies a chain a server presented (DER, leaf first) against the cluster CA, as the
/// pinned client would have in its handshake: issued by the CA (through the chain's
/// intermediates), for serverAuth, valid now, for `host` (a DNS name or an IP).
pub fn verify_presented(
    ca: &[Vec<u8>],
    chain: &[Vec<u8>],
    url: &str,
    host: &str,
) -> Result<(), FetchError> {
    let refused = |detail: String| FetchError::Certificate {
        url: url.to_string(),
        detail,
        out_of_validity: false,
    };
    let verifier =
        ca_verifier(ca, provider()).map_err(|e| refused(format!("cannot be checked: {e}")))?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(refused("was not recorded".into()));
    };
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let name = ServerName::try_from(host)
        .map_err(|e| refused(format!("cannot be checked for {host:?}: {e}")))?;
    match verifier.verify_server_cert(
        &CertificateDer::from(leaf.as_slice()),
        &intermediates,
        &name,
        &[],
        UnixTime::now(),
    ) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(e)) => Err(refused_by_ca(url.to_string(), e)),
        Err(e) => Err(refused(format!("was refused: {e}"))),
    }
}

/// The cluster CA refused a server's certificate: why, in words.
fn refused_by_ca(url: String, cert: rustls::CertificateError) -> FetchError {
    use rustls::CertificateError::{Expired, ExpiredContext, NotValidYet, NotValidYetContext};
    let out_of_validity = matches!(
        cert,
        Expired | ExpiredContext { .. } | NotValidYet | NotValidYetContext { .. }
    );
    let detail = match cert {
        rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature => {
            "is not signed by the pinned cluster CA".to_string()
        }
        rustls::CertificateError::NotValidForName
        | rustls::CertificateError::NotValidForNameContext { .. } => {
            "is not valid for this host name or address".to_string()
        }
        rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
            "has expired".to_string()
        }
        rustls::CertificateError::NotValidYet
        | rustls::CertificateError::NotValidYetContext { .. } => {
            "is not valid yet (check this host's clock)".to_string()
        }
        other => format!("was refused: {other}"),
    };
    FetchError::Certificate {
        url,
        detail,
        out_of_validity,
    }
}

/// A `Retry-After` value (RFC 9110 10.2.3): delay-seconds, or an HTTP-date, which is
/// as long from `now` (a date past is no wait).
pub fn retry_after(value: &str, now: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = crate::clock::parse_http_date(value)?;
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

/// The causes of an error, without reqwest's and hyper's wrappers that only repeat the
/// URL or say "client error".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        let wrapper = s.starts_with("error sending request")
            || s.starts_with("client error")
            || s.starts_with("error decoding response body")
            || s.starts_with("request or response body error");
        if !wrapper && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}

/// What the server did, if it ended the request with an HTTP/2 GOAWAY or stream reset.
fn h2_ended(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            let reason = h2.reason()?;
            return if h2.is_go_away() {
                Some(format!(
                    "it closed the connection with HTTP/2 GOAWAY ({reason:?}) before answering"
                ))
            } else if h2.is_reset() && h2.is_remote() {
                Some(format!("it reset the HTTP/2 stream ({reason:?})"))
            } else {
                None
            };
        }
        cur = err.source();
    }
    None
}

fn classify(
    url: &str,
    e: &reqwest::Error,
    timeout: Duration,
    refused: Option<rustls::CertificateError>,
) -> FetchError {
    let url = url.to_string();
    if let Some(cert) = refused {
        return refused_by_ca(url, cert);
    }
    if let Some(detail) = h2_ended(e) {
        return FetchError::Ended { url, detail };
    }
    let detail = chain(e);
    if detail.contains("invalid peer certificate: BadSignature") {
        return FetchError::Handshake {
            url,
            detail: "its handshake is not signed by the key of the certificate it presented \
                     (BadSignature)"
                .into(),
        };
    }
    if e.is_timeout() {
        return FetchError::Timeout {
            url,
            ms: timeout.as_millis(),
        };
    }
    if e.is_connect() {
        return FetchError::Connect {
            url,
            detail: chain(e),
        };
    }
    FetchError::Other {
        url,
        detail: chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = 1_764_547_200; // Mon, 01 Dec 2025 00:00:00 GMT
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Mon, 01 Dec 2025 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Sun, 30 Nov 2025 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("-1", now), None);
        assert_eq!(retry_after("soon", now), None);
    }
}
