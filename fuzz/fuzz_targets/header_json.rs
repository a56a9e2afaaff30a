//! Arbitrary bytes as a JSON header: values or errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rocketmq_tpc::protocol::header_json;

fuzz_target!(|data: &[u8]| {
    let _ = header_json::decode(data);
});
