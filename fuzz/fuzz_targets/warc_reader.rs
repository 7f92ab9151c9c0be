//! Any bytes, plain or as gzip: the WARC reader must return records and errors, never panic,
//! and never claim a record that starts outside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmlab_data::warc::{from_bytes, Item};

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    for item in from_bytes(data.to_vec()).take(10_000) {
        match item {
            Item::Record(r) => {
                assert!(r.offset < len);
                // The HTTP layer must cope with whatever the record holds, too.
                let _ = lmlab_data::http::parse_response(&r.body);
            }
            Item::Error(e) => assert!(e.offset <= len),
        }
    }
});
