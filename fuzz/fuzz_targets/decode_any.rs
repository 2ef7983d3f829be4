//! Any bytes through ingest's per-message decode with format detection, as a message on
//! `flows.raw` without a `flowlake.format` header: never a panic, and every accepted record
//! survives the Avro and canonical JSON round trips.

#![no_main]

use flowlake_fuzz::{check_accepted, context, json_context};
use flowlake_ingest::DecodeContext;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static CONTEXTS: (DecodeContext, DecodeContext) = (context(), json_context());
}

fuzz_target!(|data: &[u8]| {
    CONTEXTS.with(|(ctx, json_ctx)| {
        if let Ok((_, event)) = flowlake_ingest::decode(data, ctx) {
            check_accepted(ctx, json_ctx, &event);
        }
    });
});
