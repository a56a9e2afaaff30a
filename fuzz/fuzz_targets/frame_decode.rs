//! A stream of arbitrary bytes through the frame decoder: values or errors, never a panic.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rocketmq_tpc::protocol::frame;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(cmd)) = frame::decode(&mut buf, frame::MAX_FRAME_BYTES) {
        let _ = cmd.ext("msgId");
    }
});
