//! A small Azure Resource Manager client: GET / PUT / POST with JSON,
//! long-running operations (`Azure-AsyncOperation` and `Location` polling),
//! and retries on throttling and transient errors.
//!
//! Owns every HTTP exchange of `bootstrap`. Invariants: a 429/5xx (and a 409
//! `AnotherOperationInProgress`) is retried after the server's `Retry-After`
//! or a capped exponential backoff, at most [`MAX_TRIES`] times; the bearer
//! token never appears in an error or log line; a loopback `http://`
//! endpoint (the tests' fake ARM) is the only one used without a token.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use serde_json::Value;

/// Attempts per request before giving up.
pub const MAX_TRIES: u32 = 8;

/// An ARM failure, with the service's code and message when it sent one.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: {status} {code}: {message}")]
pub struct ArmError {
    /// Method.
    pub method: String,
    /// Path (no query, no host).
    pub path: String,
    /// HTTP status (0: no response).
    pub status: u16,
    /// ARM error code.
    pub code: String,
    /// ARM error message.
    pub message: String,
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status.
    pub status: u16,
    /// JSON body (`Null` when empty).
    pub body: Value,
    /// `Azure-AsyncOperation`.
    pub async_op: Option<String>,
    /// `Location`.
    pub location: Option<String>,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
}

/// The client.
pub struct Arm {
    endpoint: String,
    http: reqwest::Client,
    credential: Option<Arc<dyn TokenCredential>>,
    /// Seconds between polls of a long-running operation when the service
    /// sends no Retry-After.
    pub poll: Duration,
}

impl Arm {
    /// A client for `endpoint` (`https://management.azure.com`).
    pub fn new(
        endpoint: &str,
        credential: Option<Arc<dyn TokenCredential>>,
    ) -> Result<Arm, String> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let loopback =
            endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:");
        if !endpoint.starts_with("https://") && !loopback {
            return Err(format!(
                "ARM endpoint '{endpoint}' must be https:// (http only on loopback)"
            ));
        }
        if credential.is_none() && !loopback {
            return Err("no Entra ID credential for Azure Resource Manager: use --auth managed-identity, azure-cli, workload-identity or client-secret".into());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Arm {
            endpoint,
            http,
            credential,
            poll: Duration::from_secs(10),
        })
    }

    async fn token(&self) -> Result<Option<String>, String> {
        let Some(c) = &self.credential else {
            return Ok(None);
        };
        let t = c
            .get_token(&["https://management.azure.com/.default"], None)
            .await
            .map_err(|e| {
                format!(
                    "cannot get a token for Azure Resource Manager: {}",
                    crate::redact::redact(&e.to_string())
                )
            })?;
        Ok(Some(t.token.secret().to_string()))
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.endpoint)
        }
    }

    /// One request with retries. `path` may carry its query; a full URL
    /// (from an operation header) is used as is.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, ArmError> {
        let short = path.split('?').next().unwrap_or(path).to_string();
        let err = |status: u16, code: &str, message: String| ArmError {
            method: method.to_string(),
            path: crate::redact::redact(&short),
            status,
            code: code.to_string(),
            message,
        };
        let mut delay = Duration::from_secs(1);
        let mut tries = 0;
        loop {
            tries += 1;
            let m = reqwest::Method::from_bytes(method.as_bytes())
                .map_err(|e| err(0, "BadMethod", e.to_string()))?;
            let mut req = self
                .http
                .request(m, self.url(path))
                .header("accept", "application/json");
            if let Some(t) = self.token().await.map_err(|e| err(0, "Credential", e))? {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(b).unwrap_or_default());
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if tries < MAX_TRIES => {
                    tracing::warn!(
                        "{method} {short}: {}; retrying",
                        crate::redact::redact(&e.to_string())
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                    continue;
                }
                Err(e) => return Err(err(0, "Unreachable", crate::redact::redact(&e.to_string()))),
            };
            let status = resp.status().as_u16();
            let header = |n: &str| {
                resp.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let (async_op, location) = (header("azure-asyncoperation"), header("location"));
            let retry_after = header("retry-after").and_then(|v| v.trim().parse().ok());
            let bytes = resp.bytes().await.unwrap_or_default();
            let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let code = json["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let retryable = status == 429
                || status >= 500
                || (status == 409
                    && (code == "AnotherOperationInProgress"
                        || code == "Conflict"
                            && json["error"]["message"]
                                .as_str()
                                .is_some_and(|m| m.contains("in progress"))));
            if retryable && tries < MAX_TRIES {
                let wait = retry_after
                    .map_or(delay, Duration::from_secs)
                    .min(Duration::from_secs(60));
                tracing::warn!(
                    "{method} {short}: {status} {code}; retrying in {} s",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
            if status >= 400 {
                let message = json["error"]["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
                return Err(err(
                    status,
                    if code.is_empty() { "-" } else { &code },
                    crate::redact::redact(&message),
                ));
            }
            return Ok(Response {
                status,
                body: json,
                async_op,
                location,
                retry_after,
            });
        }
    }

    /// GET; `None` on 404.
    pub async fn get(&self, path: &str) -> Result<Option<Value>, ArmError> {
        match self.call("GET", path, None).await {
            Ok(r) => Ok(Some(r.body)),
            Err(e) if e.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits for a long-running operation started by `r` (a PUT/POST/PATCH
    /// response) and returns the final resource (GET of `resource`).
    pub async fn wait(&self, r: &Response, resource: &str) -> Result<Option<Value>, ArmError> {
        let fail = |status: &str, body: &Value| ArmError {
            method: "LRO".into(),
            path: crate::redact::redact(resource.split('?').next().unwrap_or(resource)),
            status: 0,
            code: status.to_string(),
            message: body["error"]["message"]
                .as_str()
                .or(body["properties"]["health"]["statusDescription"].as_str())
                .unwrap_or("the operation did not succeed")
                .to_string(),
        };
        if let Some(op) = &r.async_op {
            let mut after = r.retry_after;
            loop {
                tokio::time::sleep(after.map_or(self.poll, Duration::from_secs)).await;
                let s = self.call("GET", op, None).await?;
                match s.body["status"].as_str().unwrap_or("InProgress") {
                    "Succeeded" => break,
                    "Failed" | "Canceled" | "Cancelled" => {
                        return Err(fail(s.body["status"].as_str().unwrap_or("Failed"), &s.body))
                    }
                    _ => after = s.retry_after,
                }
            }
        } else if let (202, Some(loc)) = (r.status, &r.location) {
            let mut after = r.retry_after;
            loop {
                tokio::time::sleep(after.map_or(self.poll, Duration::from_secs)).await;
                let s = self.call("GET", loc, None).await?;
                if s.status != 202 {
                    break;
                }
                after = s.retry_after;
            }
        }
        // A resource may still report a non-terminal provisioning state.
        loop {
            let Some(v) = self.get(resource).await? else {
                return Ok(None);
            };
            match v["properties"]["provisioningState"].as_str() {
                None | Some("Succeeded") => return Ok(Some(v)),
                Some("Failed") | Some("Canceled") => return Err(fail("Failed", &v)),
                Some(_) => tokio::time::sleep(self.poll).await,
            }
        }
    }
}
