//! The other records containd reads: inventory identities (Avro and JSON) and its own
//! outputs (commands and decision records, as adapters and replays read them back).
#![no_main]

use containd::codec::{AvroCodec, Schemas};
use containd::emit::{DecisionRecord, EnforcementCommand};
use containd::inventory::IdentityRecord;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn codec() -> &'static AvroCodec {
    static C: OnceLock<AvroCodec> = OnceLock::new();
    C.get_or_init(|| AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[]))
}

fuzz_target!(|data: &[u8]| {
    let _ = codec().decode_identity(data);
    let _ = codec().decode_command::<EnforcementCommand>(data);
    let _ = codec().decode_decision::<DecisionRecord>(data);
    let _ = serde_json::from_slice::<IdentityRecord>(data);
});
