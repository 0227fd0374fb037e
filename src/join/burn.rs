//! Once the node is in, a single-use token is burned: the node deletes the token's Secret
//! on the cluster with the token itself (`kubejoin token create --single-use` gave it the
//! right to, and nothing more), so that no copy of it works any more: not cloud-init's
//! cached user-data, not the metadata service's, not the template the machine came from.
//! A token its Secret does not label single-use is left to its TTL, said once: it may be a
//! fleet's shared token, which one node must not end for all.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::cluster::{Api, ApiError, tokens};
use crate::token::BootstrapToken;

/// What became of the token on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// This node deleted it.
    Burned,
    /// Not single-use: valid until it expires (`YYYY-MM-DDTHH:MM:SSZ`, "never", or not
    /// known to the node).
    LeftToTtl { expires: Option<String> },
    /// The cluster no longer has it (deleted, expired, or burned already).
    AlreadyGone,
    /// `keep_token = true`.
    Kept,
    /// The API server could not be asked, or refused in a way the node cannot fix.
    Failed { why: String },
}

impl Fate {
    /// One sentence, for the log and the state record.
    pub fn describe(&self, id: &str) -> String {
        match self {
            Fate::Burned => format!(
                "bootstrap token {id} deleted on the cluster (single-use): no copy of it works any more"
            ),
            Fate::LeftToTtl { expires } => format!(
                "bootstrap token {id} stays valid on the cluster until it expires ({}): it is not single-use \
                 (`kubejoin token create --single-use`); `kubejoin token delete {id}` on the control plane ends it now",
                expires
                    .as_deref()
                    .unwrap_or("its expiration is not readable with the token")
            ),
            Fate::AlreadyGone => format!(
                "bootstrap token {id} is no longer on the cluster (deleted, expired, or burned)"
            ),
            Fate::Kept => format!(
                "bootstrap token {id} left on the cluster (keep_token = true): it stays valid until it expires"
            ),
            Fate::Failed { why } => format!(
                "bootstrap token {id} could not be deleted on the cluster ({why}): it stays valid until it \
                 expires; `kubejoin token delete {id}` on the control plane ends it now"
            ),
        }
    }
}

/// What the answer to `GET` of the token's Secret, as the token, means: delete it (its
/// uid, for the precondition), or its fate, or try again.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Delete { uid: String },
    Done(Fate),
    Retry(String),
}

/// Decides on the answer to the `GET` (pure).
pub fn after_get(answer: Result<&Value, &ApiError>) -> Next {
    match answer {
        Ok(secret) => {
            if secret["metadata"]["labels"][tokens::SINGLE_USE_LABEL] != "true" {
                let expires = secret["data"]["expiration"]
                    .as_str()
                    .and_then(|e| STANDARD.decode(e).ok())
                    .and_then(|e| String::from_utf8(e).ok())
                    .unwrap_or_else(|| "never".into());
                return Next::Done(Fate::LeftToTtl {
                    expires: Some(expires),
                });
            }
            match secret["metadata"]["uid"].as_str() {
                Some(uid) if !uid.is_empty() => Next::Delete {
                    uid: uid.to_string(),
                },
                _ => Next::Done(Fate::Failed {
                    why: "its Secret has no uid".into(),
                }),
            }
        }
        Err(e) => match e.status() {
            // No right to read it: not single-use.
            Some(403) => Next::Done(Fate::LeftToTtl { expires: None }),
            Some(401 | 404) => Next::Done(Fate::AlreadyGone),
            _ => retry_or_fail(e),
        },
    }
}

/// Decides on the answer to the `DELETE` (pure).
pub fn after_delete(answer: Result<&Value, &ApiError>) -> Next {
    match answer {
        Ok(_) => Next::Done(Fate::Burned),
        Err(e) => match e.status() {
            Some(401 | 404) => Next::Done(Fate::AlreadyGone),
            Some(403) => Next::Done(Fate::Failed {
                why: "the token may read its Secret but not delete it: its Role grants less than \
                      `kubejoin token create --single-use` makes"
                    .into(),
            }),
            Some(409) => Next::Done(Fate::Failed {
                why: "the Secret was replaced by another of the same name".into(),
            }),
            _ => retry_or_fail(e),
        },
    }
}

/// A failure on the way or on the server is tried again; anything else is said.
fn retry_or_fail(e: &ApiError) -> Next {
    match e.status() {
        None | Some(429 | 500..) => Next::Retry(e.to_string()),
        Some(_) => Next::Done(Fate::Failed { why: e.to_string() }),
    }
}

/// How often a failure on the way is tried again, and the first pause.
const TRIES: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// Burns the token if it is single-use: as the token, at `server` trusting only `ca_pem`.
pub async fn burn(server: &str, ca_pem: &[u8], token: &BootstrapToken) -> Fate {
    let api = match Api::new(server, ca_pem, Some(token.expose())) {
        Ok(api) => api,
        Err(why) => return Fate::Failed { why },
    };
    let path = format!(
        "/api/v1/namespaces/kube-system/secrets/{}",
        tokens::secret_name(token.id())
    );
    let mut pause = FIRST_PAUSE;
    let mut uid: Option<String> = None;
    for attempt in 1..=TRIES {
        let next = match &uid {
            None => {
                let answer = api.call(reqwest::Method::GET, &path, None).await;
                after_get(answer.as_ref())
            }
            Some(uid) => {
                let options = json!({
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "preconditions": { "uid": uid },
                });
                let answer = api
                    .call(reqwest::Method::DELETE, &path, Some(&options))
                    .await;
                after_delete(answer.as_ref())
            }
        };
        match next {
            Next::Delete { uid: u } => uid = Some(u),
            Next::Done(fate) => return fate,
            Next::Retry(why) if attempt == TRIES => return Fate::Failed { why },
            Next::Retry(why) => {
                tracing::info!(
                    phase = "done",
                    "deleting the single-use token: {why}; trying again in {} s",
                    pause.as_secs()
                );
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    // The GET said delete on the last try.
    Fate::Failed {
        why: "no try was left to delete it".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> ApiError {
        ApiError::Status {
            method: "GET".into(),
            path: "/p".into(),
            status: code,
            message: "m".into(),
        }
    }

    #[test]
    fn only_a_token_labelled_single_use_is_deleted() {
        let token: BootstrapToken = "abcdef.abcdef0123456789".parse().unwrap();
        let spec = tokens::Spec {
            ttl: Some(Duration::from_secs(60)),
            description: String::new(),
            groups: Vec::new(),
            authentication: true,
            single_use: true,
        };
        let mut secret = tokens::secret_manifest(&token, &spec, 0);
        secret["metadata"]["uid"] = json!("u-1");
        assert_eq!(after_get(Ok(&secret)), Next::Delete { uid: "u-1".into() });
        // A fleet's token (no label), even where RBAC would let this node delete it.
        let shared = tokens::secret_manifest(
            &token,
            &tokens::Spec {
                single_use: false,
                ..spec
            },
            0,
        );
        assert_eq!(
            after_get(Ok(&shared)),
            Next::Done(Fate::LeftToTtl {
                expires: Some("1970-01-01T00:01:00Z".into())
            })
        );
        assert_eq!(
            after_get(Err(&status(403))),
            Next::Done(Fate::LeftToTtl { expires: None })
        );
        assert_eq!(after_get(Err(&status(401))), Next::Done(Fate::AlreadyGone));
        assert!(matches!(after_get(Err(&status(503))), Next::Retry(_)));
        assert!(matches!(
            after_get(Err(&status(400))),
            Next::Done(Fate::Failed { .. })
        ));
    }

    #[test]
    fn the_delete_and_what_is_said() {
        assert_eq!(after_delete(Ok(&json!({}))), Next::Done(Fate::Burned));
        assert_eq!(
            after_delete(Err(&status(404))),
            Next::Done(Fate::AlreadyGone)
        );
        assert!(matches!(
            after_delete(Err(&status(409))),
            Next::Done(Fate::Failed { .. })
        ));
        assert!(matches!(after_delete(Err(&status(429))), Next::Retry(_)));
        assert!(
            Fate::Burned
                .describe("abcdef")
                .contains("no copy of it works")
        );
        let left = Fate::LeftToTtl { expires: None }.describe("abcdef");
        assert!(left.contains("kubejoin token delete abcdef"), "{left}");
        assert!(left.contains("--single-use"), "{left}");
    }
}
