//! Ingest's decode with the format pinned (by configuration or a `flowlake.format` header):
//! the first byte picks the format from `Format::ALL` (so formats added later are covered),
//! the rest is the message. Pinning skips detection, so each decoder sees inputs that
//! detection would have routed elsewhere.

#![no_main]

use flowlake_fuzz::{check_accepted, context, json_context};
use flowlake_ingest::{DecodeContext, Format};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    static CONTEXTS: (RefCell<DecodeContext>, DecodeContext) =
        (RefCell::new(context()), json_context());
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let format = Format::ALL[usize::from(selector) % Format::ALL.len()];
    CONTEXTS.with(|(ctx, json_ctx)| {
        let mut ctx = ctx.borrow_mut();
        ctx.format = Some(format);
        if let Ok((decoded_as, event)) = flowlake_ingest::decode(message, &ctx) {
            assert_eq!(decoded_as, format, "a pinned format is not detected");
            check_accepted(&ctx, json_ctx, &event);
        }
    });
});
