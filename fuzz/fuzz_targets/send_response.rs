//! A frame that claims to be a send response: header fields parsed or rejected, never a panic.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rocketmq_tpc::protocol::frame;
use rocketmq_tpc::protocol::send_response_header::SendMessageResponseHeader;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(cmd)) = frame::decode(&mut buf, frame::MAX_FRAME_BYTES) {
        let _ = SendMessageResponseHeader::from_command(&cmd);
    }
});
