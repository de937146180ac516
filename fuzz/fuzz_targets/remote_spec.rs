//! REMOTE parsing never panics, and never echoes a SAS signature.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(spec) = hopstage::remote::parse(s) {
            let shown = format!("{spec} {spec:?}");
            if let hopstage::remote::RemoteSpec::Url { sas: Some(q), .. } = &spec {
                if q.len() > 8 && !q.contains('/') {
                    assert!(!shown.contains(q.as_str()), "SAS shown: {shown}");
                }
            }
        }
        let _ = hopstage::config::parse_connection_string(s);
    }
});
