//! The List Blobs response parser never panics on any body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hopstage::store::parse_list_page(data);
});
