//! Any bytes as a configuration file through the real loader, `Config::parse` (what
//! `Config::load` runs after reading the file: TOML, then every section's
//! validation). Text must be rejected with an error, never a panic; a config that
//! loads must have a redacted JSON view (the API's `/v1/config`).
#![no_main]

use std::path::Path;

use albatross_autoscale::config::{Config, ConfigError};
use albatross_autoscale::http::api::redacted;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `Config::load` reads with `read_to_string`: non-UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Relative paths resolve against ../config, as for the seed files. The loader
    // only stats the files it names (never reads them), so any path is harmless.
    match Config::parse(text, Path::new("../config/fuzz.toml")) {
        Ok(c) => {
            serde_json::to_string(&redacted(&c)).expect("JSON view");
        }
        Err(e) => {
            if let ConfigError::Invalid { problems, .. } = &e {
                assert!(!problems.is_empty(), "rejected without a problem");
            }
            let _ = e.to_string();
        }
    }
});
