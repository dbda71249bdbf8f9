//! Config parse + compile as `portcullis check` runs it (`Mode::Check`: nothing is written or
//! opened) on arbitrary text: errors are fine, a panic is not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::{load_str, Mode};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    portcullis::install_crypto_provider();
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    // Relative paths resolve under a folder that does not exist: file reads fail cleanly.
    let _ = load_str(
        Path::new("/nonexistent-portcullis-fuzz/gateway.yaml"),
        src,
        None,
        Mode::Check,
    );
});
