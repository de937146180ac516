//! Configuration: command-line flags, `AZURE_*` environment and the TOML file
//! resolved into an immutable [`Target`] (endpoint, container, path, credential).
//!
//! Owns the credential precedence, first match wins:
//! 1. flags (`--account`, `--blob-endpoint`, `--auth`),
//! 2. `AZURE_STORAGE_CONNECTION_STRING`,
//! 3. `AZURE_STORAGE_ACCOUNT` + `AZURE_STORAGE_KEY` or `AZURE_STORAGE_SAS_TOKEN`,
//! 4. the config file (`$HOPSTAGE_CONFIG`, `~/.config/hopstage/config.toml`,
//!    `/etc/hopstage/config.toml`),
//! 5. Entra ID (`auto`: workload identity, client secret, managed identity, CLI).
//!
//! Does no network I/O. A config file that holds a key or SAS and is readable
//! by group or others is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::auth::{self, Auth};
use crate::remote::{self, RemoteSpec};

/// Azurite's documented well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's documented well-known development key (public, not a secret).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Configuration errors: always fatal, always one line naming what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file could not be read or parsed.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Something needed is missing or invalid.
    #[error("{0}")]
    Invalid(String),
}

/// One alias in the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// Container name (defaults to the alias name).
    pub container: Option<String>,
    /// Account name (defaults to the file's top-level `account`).
    pub account: Option<String>,
    /// Blob endpoint (defaults to `https://ACCOUNT.blob.core.windows.net/`).
    pub blob_endpoint: Option<String>,
    /// Auth mode (defaults to the file's top-level `auth`).
    pub auth: Option<String>,
    /// Path prefix inside the container that this alias starts at.
    pub prefix: Option<String>,
}

/// The TOML config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Default storage account.
    pub account: Option<String>,
    /// Default blob endpoint.
    pub blob_endpoint: Option<String>,
    /// Default auth mode: auto, key, sas, managed-identity, workload-identity, azure-cli, client-secret, anonymous.
    pub auth: Option<String>,
    /// Client id of a user-assigned managed identity.
    pub client_id: Option<String>,
    /// Account key (only in a file readable by its owner alone).
    pub key: Option<String>,
    /// SAS token (only in a file readable by its owner alone).
    pub sas: Option<String>,
    /// Container aliases.
    #[serde(default)]
    pub alias: BTreeMap<String, AliasConfig>,
    /// Slurm hook settings (read by the Slurm module).
    #[serde(default)]
    pub slurm: Option<toml::Value>,
}

/// Account-level settings from flags.
#[derive(Debug, Default, Clone)]
pub struct AccountFlags {
    /// `--account`.
    pub account: Option<String>,
    /// `--blob-endpoint`.
    pub blob_endpoint: Option<String>,
    /// `--auth`.
    pub auth: Option<String>,
}

/// A fully resolved remote location.
#[derive(Clone)]
pub struct Target {
    /// Account name.
    pub account: String,
    /// Blob service endpoint, ending in `/`.
    pub endpoint: Url,
    /// Container name.
    pub container: String,
    /// Path inside the container, no leading `/`.
    pub path: String,
    /// The credential.
    pub auth: Auth,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{} ({})",
            self.account,
            self.container,
            self.path,
            self.auth.describe()
        )
    }
}

impl Target {
    /// `account/container`, for messages.
    pub fn display_container(&self) -> String {
        format!("account '{}', container '{}'", self.account, self.container)
    }
}

/// Finds the config file: `$HOPSTAGE_CONFIG`, then the user's, then `/etc`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HOPSTAGE_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".config/hopstage/config.toml"));
    }
    candidates.push(PathBuf::from("/etc/hopstage/config.toml"));
    candidates.into_iter().find(|p| p.is_file())
}

/// Reads and checks the config file at `path`.
pub fn load_file(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        message: format!("{e} (set HOPSTAGE_CONFIG to a readable file)"),
    })?;
    let cfg = parse_file(&text).map_err(|message| Error::File {
        path: path.display().to_string(),
        message,
    })?;
    if cfg.key.is_some() || cfg.sas.is_some() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o777);
        if mode & 0o077 != 0 {
            return Err(Error::File {
                path: path.display().to_string(),
                message: format!(
                    "holds a key or SAS but is readable by others (mode {:04o}): run chmod 600 on it, or use managed identity",
                    mode & 0o7777
                ),
            });
        }
    }
    Ok(cfg)
}

/// Parses config text.
pub fn parse_file(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| e.message().to_string())
}

/// Parsed `AZURE_STORAGE_CONNECTION_STRING`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectionString {
    /// Account name.
    pub account: Option<String>,
    /// Account key.
    pub key: Option<String>,
    /// SAS.
    pub sas: Option<String>,
    /// Blob endpoint.
    pub blob_endpoint: Option<String>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ConnectionString({:?}, {:?})",
            self.account, self.blob_endpoint
        )
    }
}

/// Parses a storage connection string (`Key=Value;...`, with
/// `UseDevelopmentStorage=true` meaning Azurite on 127.0.0.1:10000).
pub fn parse_connection_string(text: &str) -> Result<ConnectionString, String> {
    let mut cs = ConnectionString::default();
    let mut protocol = "https".to_string();
    let mut suffix = "core.windows.net".to_string();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            "AZURE_STORAGE_CONNECTION_STRING has a part without '=': expected Key=Value;..."
                .to_string()
        })?;
        match k.to_ascii_lowercase().as_str() {
            "accountname" => cs.account = Some(v.to_string()),
            "accountkey" => cs.key = Some(v.to_string()),
            "sharedaccesssignature" => cs.sas = Some(v.trim_start_matches('?').to_string()),
            "blobendpoint" => cs.blob_endpoint = Some(v.to_string()),
            "defaultendpointsprotocol" => protocol = v.to_string(),
            "endpointsuffix" => suffix = v.to_string(),
            "usedevelopmentstorage" if v.eq_ignore_ascii_case("true") => {
                cs.account = Some(AZURITE_ACCOUNT.into());
                cs.key = Some(AZURITE_KEY.into());
                cs.blob_endpoint = Some(format!("http://127.0.0.1:10000/{AZURITE_ACCOUNT}"));
            }
            _ => {}
        }
    }
    if cs.blob_endpoint.is_none() {
        if let Some(a) = &cs.account {
            cs.blob_endpoint = Some(format!("{protocol}://{a}.blob.{suffix}"));
        }
    }
    if cs.account.is_none() {
        if let Some(ep) = &cs.blob_endpoint {
            cs.account = account_from_endpoint(ep);
        }
    }
    if cs.blob_endpoint.is_none() {
        return Err(
            "AZURE_STORAGE_CONNECTION_STRING names neither AccountName nor BlobEndpoint".into(),
        );
    }
    Ok(cs)
}

fn account_from_endpoint(ep: &str) -> Option<String> {
    let url = Url::parse(ep).ok()?;
    let host = url.host_str()?;
    if host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" {
        url.path_segments()?.next().map(str::to_string)
    } else {
        host.split('.').next().map(str::to_string)
    }
}

fn endpoint_url(ep: &str) -> Result<Url, Error> {
    let mut s = ep.trim().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    Url::parse(&s).map_err(|e| Error::Invalid(format!("blob endpoint '{ep}' is not a URL: {e}")))
}

/// Everything the resolver reads, gathered so that tests can supply it.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// Flags.
    pub flags: AccountFlags,
    /// Environment variables (only the `AZURE_*` ones matter).
    pub env: BTreeMap<String, String>,
    /// The config file, if any.
    pub file: Option<FileConfig>,
}

impl Sources {
    /// Reads the process environment and the config file.
    pub fn load(flags: AccountFlags) -> Result<Self, Error> {
        let env = std::env::vars()
            .filter(|(k, v)| k.starts_with("AZURE_") && !v.is_empty())
            .collect();
        let file = match config_path() {
            Some(p) if p.exists() || std::env::var_os("HOPSTAGE_CONFIG").is_some() => {
                Some(load_file(&p)?)
            }
            _ => None,
        };
        Ok(Sources { flags, env, file })
    }

    /// Resolves a REMOTE to a [`Target`].
    pub fn resolve(&self, spec: &RemoteSpec) -> Result<Target, Error> {
        match spec {
            RemoteSpec::Url {
                endpoint,
                account,
                container,
                path,
                sas,
            } => {
                let auth = match sas {
                    Some(s) => Auth::Sas(s.clone()),
                    None => self.credential(account, None, None)?,
                };
                Ok(Target {
                    account: account.clone(),
                    endpoint: endpoint.clone(),
                    container: container.clone(),
                    path: path.clone(),
                    auth,
                })
            }
            RemoteSpec::Alias { alias, path } => self.resolve_alias(alias, path),
        }
    }

    fn resolve_alias(&self, alias: &str, path: &str) -> Result<Target, Error> {
        let file = self.file.clone().unwrap_or_default();
        let entry = file.alias.get(alias).cloned().unwrap_or_default();
        let container = entry.container.clone().unwrap_or_else(|| alias.to_string());
        if !remote::valid_container(&container) {
            return Err(Error::Invalid(format!(
                "'{alias}:' is neither an alias in the config file nor a valid container name (3-63 lowercase letters, digits, '-')"
            )));
        }
        let mut full_path = entry
            .prefix
            .clone()
            .map(|p| p.trim_matches('/').to_string())
            .unwrap_or_default();
        if !path.is_empty() {
            if !full_path.is_empty() {
                full_path.push('/');
            }
            full_path.push_str(path);
        }
        let conn = self
            .env
            .get("AZURE_STORAGE_CONNECTION_STRING")
            .map(|s| parse_connection_string(s))
            .transpose()
            .map_err(Error::Invalid)?;
        // Account: flag, connection string, env, alias entry, file default.
        let account = self
            .flags
            .account
            .clone()
            .or_else(|| conn.as_ref().and_then(|c| c.account.clone()))
            .or_else(|| self.env.get("AZURE_STORAGE_ACCOUNT").cloned())
            .or(entry.account.clone())
            .or(file.account.clone())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no storage account for '{alias}:': pass --account, set AZURE_STORAGE_ACCOUNT or AZURE_STORAGE_CONNECTION_STRING, or add `account = \"...\"` to the config file"
                ))
            })?;
        let endpoint = self
            .flags
            .blob_endpoint
            .clone()
            .or_else(|| conn.as_ref().and_then(|c| c.blob_endpoint.clone()))
            .or(entry.blob_endpoint.clone())
            .or(file.blob_endpoint.clone())
            .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net/"));
        let auth = self.credential(&account, conn.as_ref(), Some(&entry))?;
        Ok(Target {
            account,
            endpoint: endpoint_url(&endpoint)?,
            container,
            path: full_path,
            auth,
        })
    }

    fn credential(
        &self,
        account: &str,
        conn: Option<&ConnectionString>,
        entry: Option<&AliasConfig>,
    ) -> Result<Auth, Error> {
        let file = self.file.clone().unwrap_or_default();
        let mode = self
            .flags
            .auth
            .clone()
            .or_else(|| entry.and_then(|e| e.auth.clone()))
            .or(file.auth.clone())
            .unwrap_or_else(|| "auto".into());
        let explicit_entra = !matches!(mode.as_str(), "auto" | "key" | "sas");
        if !explicit_entra {
            if let Some(c) = conn {
                if let Some(k) = &c.key {
                    return Auth::shared_key(c.account.as_deref().unwrap_or(account), k)
                        .map_err(Error::Invalid);
                }
                if let Some(s) = &c.sas {
                    return Ok(Auth::Sas(s.clone()));
                }
            }
            if let Some(k) = self.env.get("AZURE_STORAGE_KEY") {
                return Auth::shared_key(account, k).map_err(Error::Invalid);
            }
            if let Some(s) = self.env.get("AZURE_STORAGE_SAS_TOKEN") {
                return Ok(Auth::Sas(s.trim_start_matches('?').to_string()));
            }
            if let Some(k) = &file.key {
                return Auth::shared_key(account, k).map_err(Error::Invalid);
            }
            if let Some(s) = &file.sas {
                return Ok(Auth::Sas(s.trim_start_matches('?').to_string()));
            }
            if mode == "key" || mode == "sas" {
                return Err(Error::Invalid(format!(
                    "auth mode '{mode}' for account '{account}' but no {mode} was found: set AZURE_STORAGE_KEY / AZURE_STORAGE_SAS_TOKEN"
                )));
            }
        }
        if mode == "anonymous" {
            return Ok(Auth::Anonymous);
        }
        auth::token_credential(&mode, file.client_id.as_deref()).map_err(Error::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(env: &[(&str, &str)], file: Option<&str>) -> Sources {
        Sources {
            flags: AccountFlags::default(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            file: file.map(|t| parse_file(t).unwrap()),
        }
    }

    #[test]
    fn connection_string_azurite() {
        let cs = parse_connection_string(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:9999/devstoreaccount1;"
        ))
        .unwrap();
        assert_eq!(cs.account.as_deref(), Some("devstoreaccount1"));
        assert_eq!(
            cs.blob_endpoint.as_deref(),
            Some("http://127.0.0.1:9999/devstoreaccount1")
        );
        let dev = parse_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(dev.key.as_deref(), Some(AZURITE_KEY));
        assert!(parse_connection_string("garbage").is_err());
        assert!(!format!("{cs:?}").contains("Eby8"));
    }

    #[test]
    fn connection_string_wins_over_file() {
        let s = sources(
            &[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=a1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/a1",
            )],
            Some("account = \"other\"\n[alias.home]\ncontainer = \"data\"\nprefix = \"/base/\""),
        );
        let t = s.resolve(&remote::parse("home:/proj").unwrap()).unwrap();
        assert_eq!(t.account, "a1");
        assert_eq!(t.container, "data");
        assert_eq!(t.path, "base/proj");
        assert_eq!(t.endpoint.as_str(), "http://127.0.0.1:1/a1/");
        assert_eq!(t.auth.describe(), "shared key");
    }

    #[test]
    fn flags_win_and_env_key() {
        let mut s = sources(
            &[
                ("AZURE_STORAGE_ACCOUNT", "envacct"),
                ("AZURE_STORAGE_SAS_TOKEN", "?sv=1&sig=x"),
            ],
            None,
        );
        let t = s.resolve(&remote::parse("log:/x").unwrap()).unwrap();
        assert_eq!(t.account, "envacct");
        assert_eq!(
            t.endpoint.as_str(),
            "https://envacct.blob.core.windows.net/"
        );
        assert!(matches!(t.auth, Auth::Sas(ref q) if q == "sv=1&sig=x"));
        s.flags.account = Some("flagacct".into());
        let t = s.resolve(&remote::parse("log:/x").unwrap()).unwrap();
        assert_eq!(t.account, "flagacct");
    }

    #[test]
    fn missing_account_and_bad_alias() {
        let s = sources(&[], None);
        let e = s.resolve(&remote::parse("home:/x").unwrap()).unwrap_err();
        assert!(e.to_string().contains("no storage account"), "{e}");
        let e = s
            .resolve(&remote::parse("Bad_Alias:/x").unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("neither an alias"), "{e}");
    }

    #[test]
    fn file_with_key_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "account = \"a\"\nkey = \"a2V5\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_file(&p).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(!e.to_string().contains("a2V5"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_file(&p).is_ok());
    }

    #[test]
    fn unknown_keys_rejected() {
        assert!(parse_file("acount = \"typo\"").is_err());
    }
}
