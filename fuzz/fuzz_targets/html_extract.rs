//! Any text as HTML: extraction must not panic, and the result never contains markup the page
//! did not spell out as text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let html = String::from_utf8_lossy(data);
    let text = lmlab_data::extract::main_text(&html);
    assert!(!text.contains("\n\n"), "empty lines are dropped");
    let (decoded, _) = lmlab_data::http::decode_text(data, None);
    let _ = lmlab_data::extract::main_text(&decoded);
});
