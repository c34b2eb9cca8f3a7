//! Whole records through decode, trust, rules and state, with the example deployment: a
//! decision or a dead-letter reason, never a panic. State carries from one input to the next.
#![no_main]

use containd::offline::OfflineDecider;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::Mutex;

static DECIDER: Mutex<Option<(OfflineDecider, i64)>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = DECIDER.lock().unwrap_or_else(|p| p.into_inner());
    let (d, position) = guard.get_or_insert_with(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let d = OfflineDecider::load(&root.join("containd.toml"), &root.join("rules")).unwrap();
        (d, 0)
    });
    *position += 1;
    let _ = d.decide_line(data, *position);
});
