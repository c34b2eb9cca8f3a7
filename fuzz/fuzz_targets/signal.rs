//! Signal decoders: the first byte picks the format (JSON, Avro single-object, Confluent,
//! SET), the rest is the record. Any bytes: a signal or a typed error, never a panic or abort.
#![no_main]

use containd::codec::{AvroCodec, Format, Schemas, SignalDecoder};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn decoder() -> &'static SignalDecoder {
    static D: OnceLock<SignalDecoder> = OnceLock::new();
    D.get_or_init(|| {
        let codec = AvroCodec::new(Arc::new(Schemas::bundled().unwrap()), &[5]);
        SignalDecoder::new(codec, 1 << 20)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((pick, record)) = data.split_first() else { return };
    let format = [Format::Json, Format::Avro, Format::Confluent, Format::Set][*pick as usize % 4];
    if let Err(e) = decoder().decode(format, Some(record)) {
        assert!(!e.kind().is_empty());
    }
});
