//! Arbitrary batch bodies and stored-message bodies: records or errors, never a panic.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rocketmq_tpc::protocol::{batch, stored_message};

fuzz_target!(|data: &[u8]| {
    let _ = batch::decode(Bytes::copy_from_slice(data));
    let _ = stored_message::decode_all(Bytes::copy_from_slice(data), 1 << 20);
});
