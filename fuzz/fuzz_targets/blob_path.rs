//! Blob name → local path: whatever is accepted stays inside the root.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Component;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = hopstage::pathmap::blob_to_relative(s) {
            assert!(p.is_relative(), "{s:?} -> {p:?}");
            for c in p.components() {
                assert!(matches!(c, Component::Normal(_)), "{s:?} -> {p:?}");
            }
            assert!(!p.as_os_str().is_empty());
        }
    }
});
