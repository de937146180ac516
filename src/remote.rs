//! Parsing of REMOTE arguments: `ALIAS:/path` or a blob URL.
//!
//! This module is pure: it turns text into a [`RemoteSpec`] and never touches
//! the network or the configuration. Resolution of aliases to accounts and
//! credentials happens in [`crate::config`].

use url::Url;

/// A parsed REMOTE argument.
#[derive(Clone, PartialEq, Eq)]
pub enum RemoteSpec {
    /// `ALIAS:/path`: a container alias (or container name) plus a path inside it.
    Alias {
        /// The alias or container name before the colon.
        alias: String,
        /// The path inside the container, without leading `/`.
        path: String,
    },
    /// A full URL `https://ACCOUNT.blob.core.windows.net/CONTAINER/path[?SAS]`, or
    /// a path-style emulator URL `http://127.0.0.1:10000/ACCOUNT/CONTAINER/path`.
    Url {
        /// The blob service endpoint, e.g. `https://acct.blob.core.windows.net/`.
        endpoint: Url,
        /// The storage account name.
        account: String,
        /// The container name.
        container: String,
        /// The path inside the container, without leading `/`.
        path: String,
        /// The SAS query string, if any (a secret: never printed).
        sas: Option<String>,
    },
}

impl std::fmt::Debug for RemoteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for RemoteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteSpec::Alias { alias, path } => write!(f, "{alias}:/{path}"),
            RemoteSpec::Url {
                account,
                container,
                path,
                ..
            } => write!(f, "{account}/{container}/{path}"),
        }
    }
}

impl RemoteSpec {
    /// The path inside the container (no leading `/`).
    pub fn path(&self) -> &str {
        match self {
            RemoteSpec::Alias { path, .. } | RemoteSpec::Url { path, .. } => path,
        }
    }
}

/// Returns true when `arg` looks like a REMOTE rather than a local path.
pub fn looks_remote(arg: &str) -> bool {
    if arg.starts_with("https://") || arg.starts_with("http://") {
        return true;
    }
    match arg.split_once(':') {
        Some((alias, _)) => !alias.is_empty() && !alias.contains('/') && valid_alias(alias),
        None => false,
    }
}

fn valid_alias(alias: &str) -> bool {
    alias
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Container names: 3-63 chars of lowercase letters, digits and single dashes.
pub fn valid_container(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Parses a REMOTE argument.
pub fn parse(arg: &str) -> Result<RemoteSpec, String> {
    if arg.starts_with("https://") || arg.starts_with("http://") {
        return parse_url(arg);
    }
    let (alias, path) = arg.split_once(':').ok_or_else(|| {
        format!("'{arg}' is not a remote: use ALIAS:/path (e.g. home:/proj) or a blob URL")
    })?;
    if alias.is_empty() || !valid_alias(alias) {
        return Err(format!(
            "'{alias}' is not a valid alias: use letters, digits, '-' or '_' (e.g. home:/proj)"
        ));
    }
    let path = path.trim_start_matches('/').to_string();
    if path.contains('\0') {
        return Err(format!("remote path in '{alias}:' contains a NUL byte"));
    }
    Ok(RemoteSpec::Alias {
        alias: alias.to_string(),
        path,
    })
}

fn parse_url(arg: &str) -> Result<RemoteSpec, String> {
    let url = Url::parse(arg)
        .map_err(|e| format!("'{}' is not a valid URL: {e}", crate::redact::redact(arg)))?;
    let host = url.host_str().unwrap_or_default().to_string();
    let segments: Vec<String> = url
        .path_segments()
        .map(|s| {
            s.map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect()
        })
        .unwrap_or_default();
    let sas = url.query().filter(|q| !q.is_empty()).map(str::to_string);
    // Path-style (emulator, IP address or localhost): /ACCOUNT/CONTAINER/path.
    let path_style = host.parse::<std::net::IpAddr>().is_ok() || host == "localhost";
    let (account, mut rest) = if path_style {
        let mut it = segments.into_iter();
        let account = it.next().unwrap_or_default();
        (account, it.collect::<Vec<_>>())
    } else {
        let account = host.split('.').next().unwrap_or_default().to_string();
        (account, segments)
    };
    if account.is_empty() || rest.is_empty() || rest[0].is_empty() {
        return Err(format!(
            "'{}' names no container: use https://ACCOUNT.blob.core.windows.net/CONTAINER/path",
            crate::redact::redact(arg)
        ));
    }
    let container = rest.remove(0);
    let path = rest.join("/");
    let mut endpoint = url.clone();
    endpoint.set_query(None);
    endpoint.set_fragment(None);
    endpoint.set_path(
        if path_style {
            format!("/{account}/")
        } else {
            "/".to_string()
        }
        .as_str(),
    );
    Ok(RemoteSpec::Url {
        endpoint,
        account,
        container,
        path,
        sas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_forms() {
        assert_eq!(
            parse("home:/proj/a").unwrap(),
            RemoteSpec::Alias {
                alias: "home".into(),
                path: "proj/a".into()
            }
        );
        assert_eq!(parse("log:").unwrap().path(), "");
        assert!(parse("/local/path").is_err());
        assert!(parse("bad alias:/x").is_err());
    }

    #[test]
    fn url_forms() {
        match parse("https://acct.blob.core.windows.net/home/proj/x?sv=1&sig=s").unwrap() {
            RemoteSpec::Url {
                endpoint,
                account,
                container,
                path,
                sas,
            } => {
                assert_eq!(endpoint.as_str(), "https://acct.blob.core.windows.net/");
                assert_eq!(account, "acct");
                assert_eq!(container, "home");
                assert_eq!(path, "proj/x");
                assert_eq!(sas.as_deref(), Some("sv=1&sig=s"));
            }
            other => panic!("{other:?}"),
        }
        match parse("http://127.0.0.1:10000/devstoreaccount1/home/a%20b").unwrap() {
            RemoteSpec::Url {
                endpoint,
                account,
                container,
                path,
                ..
            } => {
                assert_eq!(
                    endpoint.as_str(),
                    "http://127.0.0.1:10000/devstoreaccount1/"
                );
                assert_eq!(account, "devstoreaccount1");
                assert_eq!(container, "home");
                assert_eq!(path, "a b");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse("https://acct.blob.core.windows.net/").is_err());
    }

    #[test]
    fn display_never_shows_sas() {
        let r = parse("https://acct.blob.core.windows.net/home/p?sig=secret").unwrap();
        assert!(!format!("{r} {r:?}").contains("secret"));
    }

    #[test]
    fn remote_detection() {
        assert!(looks_remote("home:/x"));
        assert!(looks_remote("https://a.blob.core.windows.net/c"));
        assert!(!looks_remote("/AMLFS/x"));
        assert!(!looks_remote("./a:b"));
    }

    #[test]
    fn container_names() {
        assert!(valid_container("home"));
        assert!(!valid_container("Home"));
        assert!(!valid_container("a"));
        assert!(!valid_container("a--b"));
    }
}
