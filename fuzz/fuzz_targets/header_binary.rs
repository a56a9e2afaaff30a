//! Arbitrary bytes as a binary ("ROCKETMQ") header; whatever decodes must re-encode and decode equal.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rocketmq_tpc::protocol::command::HeaderEncoding;
use rocketmq_tpc::protocol::{frame, header_binary};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = header_binary::decode(data) {
        let mut out = BytesMut::new();
        if frame::encode_command(&mut out, HeaderEncoding::Binary, &cmd, frame::MAX_FRAME_BYTES).is_ok() {
            let back = frame::decode(&mut out, frame::MAX_FRAME_BYTES).unwrap().unwrap();
            assert_eq!(back.opaque, cmd.opaque);
            assert_eq!(back.ext_fields.len(), cmd.ext_fields.len());
        }
    }
});
