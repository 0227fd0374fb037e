//! The control plane's half of the seed: `kubejoin cluster prepare` (cluster-info, the
//! RBAC for anonymous readers, bootstrappers and nodes, a check of the bootstrap signer)
//! and `kubejoin token` (create, list, delete bootstrap tokens). Both act with an admin
//! kubeconfig ([`admin`]) through [`Api`], a small JSON client over TLS verified
//! against the cluster CA.

pub mod admin;
pub mod kubelet_config;
pub mod prepare;
pub mod tokens;

use std::time::Duration;

use serde_json::Value;

use crate::discovery::http::{self, Client, FetchError, Request};

/// The cluster's API, with the admin's credentials, or a bootstrap token, or none.
pub struct Api {
    client: Client,
    base: String,
    bearer: Option<zeroize::Zeroizing<String>>,
}

/// A failed API call: the server's own `Status` message and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{method} {path}: {status} {message}")]
    Status {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{method} {path}: the answer is not JSON: {detail}")]
    NotJson {
        method: String,
        path: String,
        detail: String,
    },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn fix(&self) -> String {
        match self {
            ApiError::Fetch(FetchError::Certificate { .. }) => {
                "the server's certificate is not from the kubeconfig's CA: check the kubeconfig's server and certificate-authority".into()
            }
            ApiError::Fetch(_) => "check that the API server is running and reachable at the kubeconfig's server, then run the command again".into(),
            ApiError::Status { status: 401, .. } => {
                "the API server does not accept the kubeconfig's credentials: use a current admin kubeconfig (kubeadm's /etc/kubernetes/admin.conf)".into()
            }
            ApiError::Status { status: 403, .. } => {
                "the kubeconfig's user is not allowed to do this: use a cluster-admin kubeconfig (kubeadm's /etc/kubernetes/admin.conf; its user is in system:masters)".into()
            }
            _ => "run the command again; if it keeps failing, the API server's log says why".into(),
        }
    }
}

/// An API call that failed on the way or on the server may work when tried again; one the
/// server refused (credentials, rights, a missing or invalid object) needs a person.
impl From<ApiError> for crate::failure::Failure {
    fn from(e: ApiError) -> Self {
        let (fix, message) = (e.fix(), e.to_string());
        match e.status() {
            Some(400..=499) if e.status() != Some(429) => {
                crate::failure::Failure::NeedsPerson { fix, message }
            }
            _ => crate::failure::Failure::Transient { fix, message },
        }
    }
}

impl From<admin::AdminError> for crate::failure::Failure {
    fn from(e: admin::AdminError) -> Self {
        crate::failure::Failure::NeedsPerson {
            fix: e.fix(),
            message: format!("the admin kubeconfig cannot be used: {e}"),
        }
    }
}

/// Each call's bound: the API server answers these in milliseconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Api {
    /// With an admin kubeconfig: its server, trusting only its CA, with its credentials.
    pub fn admin(a: &admin::Admin) -> Result<Api, crate::failure::Failure> {
        let ca = ca_ders(&a.ca_pem).map_err(|e| crate::failure::Failure::NeedsPerson {
            message: format!("the admin kubeconfig's CA cannot be used: {e}"),
            fix: admin::AdminError::NoCa(String::new()).fix(),
        })?;
        let (identity, bearer) = match &a.credential {
            admin::Credential::ClientCertificate { cert_pem, key_pem } => {
                use rustls_pki_types::pem::PemObject;
                let unusable = |what: &str| crate::failure::Failure::NeedsPerson {
                    message: format!(
                        "the admin kubeconfig's client {what} is not PEM (user {:?})",
                        a.user
                    ),
                    fix: admin::AdminError::NoCredential(String::new()).fix(),
                };
                let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| unusable("certificate"))?;
                let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem)
                    .map_err(|_| unusable("key"))?;
                (Some((chain, key)), None)
            }
            admin::Credential::Token(t) => (None, Some(t.clone())),
        };
        let client = http::pinned_client_as(&ca, identity).map_err(|e| {
            crate::failure::Failure::NeedsPerson {
                message: format!("the admin kubeconfig cannot be used: {e}"),
                fix: admin::AdminError::NoCredential(String::new()).fix(),
            }
        })?;
        Ok(Api {
            client,
            base: a.server.clone(),
            bearer,
        })
    }

    /// The cluster at `base`, trusting only `ca_pem`, as `bearer` (a bootstrap token) or
    /// anonymously.
    pub fn new(
        base: &str,
        ca_pem: &[u8],
        bearer: Option<zeroize::Zeroizing<String>>,
    ) -> Result<Api, String> {
        let ca = ca_ders(ca_pem)?;
        Ok(Api {
            client: http::pinned_client(&ca)?,
            base: base.trim_end_matches('/').to_string(),
            bearer,
        })
    }

    /// As the node, with kubelet's own client certificate, at the server kubelet uses,
    /// trusting only `ca_pem`.
    pub fn as_node(
        cert: &crate::kubelet::ready::ClientCertificate,
        ca_pem: &[u8],
    ) -> Result<Api, String> {
        let ca = ca_ders(ca_pem)?;
        Ok(Api {
            client: http::pinned_client_as(&ca, Some(cert.identity()))?,
            base: cert.server.trim_end_matches('/').to_string(),
            bearer: None,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// One call; any status but 2xx is an [`ApiError::Status`] with the server's message.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let (status, value) = self.call_status(method.clone(), path, body).await?;
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(ApiError::Status {
                method: method.to_string(),
                path: path.to_string(),
                status,
                message: status_message(status, &value),
            })
        }
    }

    /// One call, its status and its JSON body (`null` when empty or not JSON on an error).
    pub async fn call_status(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ApiError> {
        let url = format!("{}{path}", self.base);
        let resp = http::request(
            &self.client,
            Request {
                method: method.clone(),
                url: &url,
                json: body.map(|b| b.to_string().into_bytes()),
                bearer: self.bearer.as_deref().map(String::as_str),
            },
            CALL_TIMEOUT,
        )
        .await?;
        if resp.body.is_empty() {
            return Ok((resp.status, Value::Null));
        }
        match serde_json::from_slice(&resp.body) {
            Ok(v) => Ok((resp.status, v)),
            Err(_) if !(200..300).contains(&resp.status) => Ok((resp.status, Value::Null)),
            Err(e) => Err(ApiError::NotJson {
                method: method.to_string(),
                path: path.to_string(),
                detail: e.to_string(),
            }),
        }
    }

    /// `GET path`, `None` on 404.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>, ApiError> {
        match self.call(reqwest::Method::GET, path, None).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A `Status` body's message, else the status's reason phrase.
fn status_message(status: u16, body: &Value) -> String {
    body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_string()
        })
}

/// The DER certificates of a PEM bundle.
pub fn ca_ders(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let certs = crate::x509::parse_pem_bundle(pem).map_err(|e| e.to_string())?;
    Ok(certs.into_iter().map(|c| c.der).collect())
}

/// `/apis/authorization.k8s.io/v1/subjectaccessreviews` for a user and groups: may they
/// `verb` `resource[/subresource]` of `group` (in `namespace`, named `name`)? Returns
/// whether allowed and the authorizer's reason.
pub struct Access<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Access<'_> {
    fn attributes(&self) -> Value {
        serde_json::json!({
            "verb": self.verb,
            "group": self.group,
            "resource": self.resource,
            "subresource": self.subresource,
            "namespace": self.namespace,
            "name": self.name,
        })
    }

    /// As the admin, for another user: a SubjectAccessReview.
    pub async fn review_for(
        &self,
        api: &Api,
        user: &str,
        groups: &[&str],
    ) -> Result<(bool, String), ApiError> {
        let spec = serde_json::json!({ "user": user, "groups": groups, "resourceAttributes": self.attributes() });
        review(api, "SubjectAccessReview", "subjectaccessreviews", spec).await
    }

    /// As the caller itself: a SelfSubjectAccessReview.
    pub async fn review_self(&self, api: &Api) -> Result<(bool, String), ApiError> {
        let spec = serde_json::json!({ "resourceAttributes": self.attributes() });
        review(
            api,
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            spec,
        )
        .await
    }
}

/// Creates an access review of `kind` with `spec`: whether allowed, and the authorizer's
/// reason.
async fn review(
    api: &Api,
    kind: &str,
    plural: &str,
    spec: Value,
) -> Result<(bool, String), ApiError> {
    let body =
        serde_json::json!({ "apiVersion": "authorization.k8s.io/v1", "kind": kind, "spec": spec });
    let path = format!("/apis/authorization.k8s.io/v1/{plural}");
    let v = api.call(reqwest::Method::POST, &path, Some(&body)).await?;
    Ok(verdict(&v))
}

fn verdict(v: &Value) -> (bool, String) {
    (
        v["status"]["allowed"].as_bool().unwrap_or(false),
        v["status"]["reason"].as_str().unwrap_or("").to_string(),
    )
}

/// What bootstrapping needs of RBAC, as the seed grants it: each right, who needs it, and
/// the kubeadm-named object that grants it.
pub struct Right {
    /// The check's name, as printed.
    pub name: &'static str,
    pub what: &'static str,
    pub access: Access<'static>,
    /// kubeadm's ClusterRoleBinding that grants it.
    pub binding: &'static str,
    pub cluster_role: &'static str,
    pub group: &'static str,
    /// The ClusterRole is kubeadm's own (not one Kubernetes ships): created with the
    /// binding, its one rule the access.
    pub creates_role: bool,
}

const CSR: Access<'static> = Access {
    verb: "create",
    group: "certificates.k8s.io",
    resource: "certificatesigningrequests",
    subresource: "",
    namespace: "",
    name: "",
};

pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// The group of the tokens `kubeadm token create` and `kubejoin token create` make.
pub const DEFAULT_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// The three rights of the seed's ClusterRoleBindings, and kubeadm's right of bootstrap
/// tokens to read Nodes (a joining node checks that no Ready Node has its name).
pub const RIGHTS: [Right; 4] = [
    Right {
        name: "bootstrappers-create-csr",
        what: "bootstrap tokens may create CSRs",
        access: CSR,
        binding: "kubeadm:kubelet-bootstrap",
        cluster_role: "system:node-bootstrapper",
        group: BOOTSTRAPPERS,
        creates_role: false,
    },
    Right {
        name: "bootstrappers-auto-approve",
        what: "bootstrap tokens' node-client CSRs are approved automatically",
        access: Access {
            subresource: "nodeclient",
            ..CSR
        },
        binding: "kubeadm:node-autoapprove-bootstrap",
        cluster_role: "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        group: BOOTSTRAPPERS,
        creates_role: false,
    },
    Right {
        name: "nodes-auto-renew",
        what: "nodes' renewal CSRs are approved automatically",
        access: Access {
            subresource: "selfnodeclient",
            ..CSR
        },
        binding: "kubeadm:node-autoapprove-certificate-rotation",
        cluster_role: "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        group: "system:nodes",
        creates_role: false,
    },
    Right {
        name: "bootstrappers-get-nodes",
        what: "bootstrap tokens may read Nodes (a joining node checks that its name is free)",
        access: Access {
            verb: "get",
            group: "",
            resource: "nodes",
            subresource: "",
            namespace: "",
            name: "",
        },
        binding: "kubeadm:get-nodes",
        cluster_role: "kubeadm:get-nodes",
        group: DEFAULT_GROUP,
        creates_role: true,
    },
];

/// The anonymous read of cluster-info, the seed's Role and RoleBinding.
pub const CLUSTER_INFO_ROLE: &str = "kubeadm:bootstrap-signer-clusterinfo";
pub use crate::cluster_info::PATH as CLUSTER_INFO;
