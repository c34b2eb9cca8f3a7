//! Rules files, conditions and configs: any text is loaded or refused with problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = containd::rules::Condition::compile(text);
    let _ = containd::rules::load_sources(vec![("r.yaml".into(), text.to_string())], &[], &[]);
    let _ = containd::config::parse(Path::new("c.toml"), text);
});
