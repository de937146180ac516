//! Credentials: the [`Auth`] choice, Shared Key request signing and Entra ID
//! token credentials.
//!
//! Owns: turning a resolved credential into pipeline policies for the SDK.
//! Invariants: a key, SAS or token never appears in `Debug`/`Display` output;
//! one token credential per process is shared by every worker (the SDK's
//! bearer policy caches and refreshes it before expiry); Shared Key signing is
//! done in the last per-try policy, after every other header is set.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How requests are authorised.
#[derive(Clone)]
pub enum Auth {
    /// Shared Key: the account key signs every request (Azurite, key-based setups).
    SharedKey {
        /// Account name.
        account: String,
        /// Decoded account key.
        key: Arc<Vec<u8>>,
    },
    /// A SAS query string appended to every request URL.
    Sas(String),
    /// An Entra ID token credential (managed identity, workload identity, CLI, client secret).
    Token {
        /// Which source produced it, for messages (`managed-identity`, ...).
        source: &'static str,
        /// The credential.
        credential: Arc<dyn TokenCredential>,
    },
    /// No credential (public containers).
    Anonymous,
}

impl Auth {
    /// A short name of the credential source, safe to print.
    pub fn describe(&self) -> &'static str {
        match self {
            Auth::SharedKey { .. } => "shared key",
            Auth::Sas(_) => "SAS token",
            Auth::Token { source, .. } => source,
            Auth::Anonymous => "anonymous",
        }
    }

    /// Builds a Shared Key credential from a base64 account key.
    pub fn shared_key(account: &str, key_b64: &str) -> Result<Self, String> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(key_b64.trim())
            .map_err(|_| {
                format!("the account key for '{account}' is not valid base64: copy it again from the portal")
            })?;
        Ok(Auth::SharedKey {
            account: account.to_string(),
            key: Arc::new(key),
        })
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// Builds the Entra ID credential named by `mode` (`managed-identity`,
/// `workload-identity`, `azure-cli`, `client-secret`, or `auto`, which picks
/// the first whose environment is present).
pub fn token_credential(mode: &str, client_id: Option<&str>) -> Result<Auth, String> {
    use azure_identity::*;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mode = if mode == "auto" {
        if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            "workload-identity"
        } else if env("AZURE_CLIENT_SECRET").is_some() {
            "client-secret"
        } else if env("IDENTITY_ENDPOINT").is_some() || !on_path("az") {
            "managed-identity"
        } else {
            "azure-cli"
        }
    } else {
        mode
    };
    let fail = |e: azure_core::Error| format!("cannot set up {mode} credential: {e}");
    let (source, credential): (&'static str, Arc<dyn TokenCredential>) = match mode {
        "managed-identity" => {
            let id = client_id
                .map(str::to_string)
                .or_else(|| env("AZURE_CLIENT_ID"));
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: id.map(UserAssignedId::ClientId),
                ..Default::default()
            };
            (
                "managed identity",
                ManagedIdentityCredential::new(Some(options)).map_err(fail)?,
            )
        }
        "workload-identity" => (
            "workload identity",
            WorkloadIdentityCredential::new(None).map_err(fail)?,
        ),
        "azure-cli" => ("Azure CLI", AzureCliCredential::new(None).map_err(fail)?),
        "client-secret" => {
            let tenant = env("AZURE_TENANT_ID")
                .ok_or("client-secret auth needs AZURE_TENANT_ID in the environment")?;
            let id = client_id
                .map(str::to_string)
                .or_else(|| env("AZURE_CLIENT_ID"))
                .ok_or("client-secret auth needs AZURE_CLIENT_ID in the environment")?;
            let secret = env("AZURE_CLIENT_SECRET")
                .ok_or("client-secret auth needs AZURE_CLIENT_SECRET in the environment")?;
            (
                "client secret",
                ClientSecretCredential::new(&tenant, id, secret.into(), None).map_err(fail)?,
            )
        }
        other => {
            return Err(format!(
                "unknown auth mode '{other}': use auto, key, sas, managed-identity, workload-identity, azure-cli, client-secret or anonymous"
            ))
        }
    };
    Ok(Auth::Token { source, credential })
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

/// The last per-try policy: adds the transactional `Content-MD5` to Put Blob
/// requests (so the service verifies the body), then signs with Shared Key
/// when a key is configured.
#[derive(Debug)]
pub struct RequestPolicy {
    signer: Option<(String, Arc<Vec<u8>>)>,
}

impl RequestPolicy {
    /// A policy that signs with `auth` when it is a Shared Key.
    pub fn new(auth: &Auth) -> Self {
        let signer = match auth {
            Auth::SharedKey { account, key } => Some((account.clone(), Arc::clone(key))),
            _ => None,
        };
        RequestPolicy { signer }
    }
}

#[async_trait]
impl Policy for RequestPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        // Put Blob carries the whole-content MD5 as x-ms-blob-content-md5 (stored);
        // sending it as Content-MD5 as well makes the service verify the body.
        let is_put_blob = request.method() == azure_core::http::Method::Put
            && request.headers().get_optional_str(&"x-ms-blob-type".into()) == Some("BlockBlob")
            && !request.url().query_pairs().any(|(k, _)| k == "comp");
        if is_put_blob {
            if let Some(md5) = request
                .headers()
                .get_optional_string(&"x-ms-blob-content-md5".into())
            {
                request.insert_header("content-md5", md5);
            }
        }
        if let Some((account, key)) = &self.signer {
            let date = azure_core::time::to_rfc7231(&azure_core::time::OffsetDateTime::now_utc());
            request.insert_header("x-ms-date", date);
            let content_length = request.body().len().unwrap_or(0);
            let headers: Vec<(String, String)> = request
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.as_str().to_string()))
                .collect();
            let to_sign = string_to_sign(
                request.method().as_ref(),
                request.url(),
                &headers,
                content_length,
                account,
            );
            let sig = sign(key, &to_sign);
            request.insert_header("authorization", format!("SharedKey {account}:{sig}"));
        }
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// HMAC-SHA256 of `text` with `key`, base64-encoded.
pub fn sign(key: &[u8], text: &str) -> String {
    // HMAC accepts keys of any length, so new_from_slice cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The Shared Key string-to-sign for the Blob service (version 2009-09-19 and later).
pub fn string_to_sign(
    method: &str,
    url: &url::Url,
    headers: &[(String, String)],
    content_length: u64,
    account: &str,
) -> String {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let length = if content_length == 0 {
        String::new()
    } else {
        content_length.to_string()
    };
    let mut ms: Vec<(&str, String)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| {
            (
                k.as_str(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    ms.sort();
    let mut s = format!(
        "{method}\n{}\n{}\n{length}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n",
        get("content-encoding"),
        get("content-language"),
        get("content-md5"),
        get("content-type"),
        get("if-modified-since"),
        get("if-match"),
        get("if-none-match"),
        get("if-unmodified-since"),
        get("range"),
    );
    for (k, v) in ms {
        s.push_str(k);
        s.push(':');
        s.push_str(&v);
        s.push('\n');
    }
    s.push('/');
    s.push_str(account);
    s.push_str(url.path());
    let mut params: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in url.query_pairs() {
        params
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.into_owned());
    }
    for (k, mut vs) in params {
        vs.sort();
        s.push('\n');
        s.push_str(&k);
        s.push(':');
        s.push_str(&vs.join(","));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_sign_layout() {
        let url = url::Url::parse(
            "http://127.0.0.1:10000/devstoreaccount1/home?restype=container&comp=list&prefix=a",
        )
        .unwrap();
        let headers = vec![
            ("x-ms-version".to_string(), "2025-01-05".to_string()),
            (
                "x-ms-date".to_string(),
                "Mon, 01 Jan 2024 00:00:00 GMT".to_string(),
            ),
            ("accept".to_string(), "application/xml".to_string()),
        ];
        let s = string_to_sign("GET", &url, &headers, 0, "devstoreaccount1");
        assert_eq!(
            s,
            "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Mon, 01 Jan 2024 00:00:00 GMT\nx-ms-version:2025-01-05\n/devstoreaccount1/devstoreaccount1/home\ncomp:list\nprefix:a\nrestype:container"
        );
    }

    #[test]
    fn hmac_known_vector() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", "what do ya want for nothing?");
        assert_eq!(sig, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
    }

    #[test]
    fn debug_hides_key() {
        let a = Auth::shared_key("acct", "c2VjcmV0a2V5").unwrap();
        assert_eq!(format!("{a:?}"), "shared key");
        assert!(Auth::shared_key("acct", "not base64!!").is_err());
    }
}
