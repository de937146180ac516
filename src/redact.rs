//! Removal of secrets from any text before it is shown.
//!
//! Every message that may carry a URL, a connection string or an SDK error goes
//! through [`redact`] before it reaches stderr, `--json` or a log. It removes SAS
//! signatures (`sig=`), account keys (`AccountKey=`), bearer tokens and
//! `SharedKey` signatures. It is deliberately conservative: it rewrites
//! whatever looks like a secret, even where that costs some detail.

/// Returns `text` with every secret-looking value replaced by `REDACTED`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for (marker, terminators) in [
        ("sig=", &['&', ' ', '"', '\'', ';', '\n', '>', '<', ')'][..]),
        ("AccountKey=", &[';', ' ', '"', '\'', '\n'][..]),
        ("SharedAccessSignature=", &[';', ' ', '"', '\'', '\n'][..]),
        ("Bearer ", &[' ', '"', '\'', '\n', ','][..]),
        ("SharedKey ", &[' ', '"', '\'', '\n', ','][..]),
    ] {
        out = replace_values(&out, marker, terminators);
    }
    out
}

fn replace_values(text: &str, marker: &str, terminators: &[char]) -> String {
    let lower = text.to_ascii_lowercase();
    let lmarker = marker.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(&lmarker) {
        let start = pos + found + marker.len();
        out.push_str(&text[pos..start]);
        let rest = &text[start..];
        let end = rest
            .find(|c| terminators.contains(&c))
            .unwrap_or(rest.len());
        if end > 0 {
            out.push_str("REDACTED");
        }
        pos = start + end;
    }
    out.push_str(&text[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn removes_sas_signature() {
        let s = "GET https://a.blob.core.windows.net/c/b?sv=2022&sig=abc%2Bdef&se=1 failed";
        let r = redact(s);
        assert!(!r.contains("abc%2Bdef"), "{r}");
        assert!(r.contains("sig=REDACTED&se=1"), "{r}");
    }

    #[test]
    fn removes_account_key_and_tokens() {
        let s = "AccountName=x;AccountKey=Zm9vYmFy==;BlobEndpoint=h Authorization: Bearer eyJ0 SharedKey x:c2ln";
        let r = redact(s);
        assert!(!r.contains("Zm9vYmFy"), "{r}");
        assert!(!r.contains("eyJ0"), "{r}");
        assert!(!r.contains("x:c2ln"), "{r}");
    }

    #[test]
    fn case_insensitive_and_untouched_otherwise() {
        assert_eq!(redact("no secrets here"), "no secrets here");
        assert!(!redact("?SIG=zzz").contains("zzz"));
    }
}
