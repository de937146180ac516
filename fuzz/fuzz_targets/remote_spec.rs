//! REMOTE parsing never panics, and never echoes a SAS signature.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(spec) = hopstage::remote::parse(s) {
            let shown = format!("{spec} {spec:?}");
            if let hopstage::remote::RemoteSpec::Url {
                sas: Some(q),
                account,
                container,
                path,
                ..
            } = &spec
            {
                // The signature must not be shown, unless the same text is also
                // part of the account, container or path (which are shown).
                if let Some(sig) = q.split('&').find_map(|kv| kv.strip_prefix("sig=")) {
                    let elsewhere = account.contains(sig) || container.contains(sig) || path.contains(sig);
                    if sig.len() >= 8 && !elsewhere {
                        assert!(!shown.contains(sig), "SAS signature shown: {shown}");
                    }
                }
            }
        }
        let _ = hopstage::config::parse_connection_string(s);
    }
});
