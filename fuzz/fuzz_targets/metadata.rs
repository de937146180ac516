//! POSIX metadata decoding never panics, and what it encodes decodes back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let mut m = HashMap::new();
        for line in s.lines() {
            if let Some((k, v)) = line.split_once('=') {
                m.insert(k.to_string(), v.to_string());
            }
        }
        let decoded = hopstage::meta::PosixMeta::decode(&m);
        let again = hopstage::meta::PosixMeta::decode(&decoded.encode());
        assert_eq!(decoded.uid, again.uid);
        assert_eq!(decoded.mode, again.mode);
        assert_eq!(decoded.is_dir, again.is_dir);
        assert_eq!(decoded.xxh3, again.xxh3);
    }
});
