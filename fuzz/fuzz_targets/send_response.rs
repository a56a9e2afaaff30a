//! A frame that claims to be a send response: header fields parsed or rejected, never a panic;
//! and what the in-place reader accepts, the general decoder decodes to the same answer.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rocketmq_tpc::protocol::frame;
use rocketmq_tpc::protocol::send_response_header::{SendMessageResponseHeader, SendResponse};

fuzz_target!(|data: &[u8]| {
    let in_place = frame::check(data, frame::MAX_FRAME_BYTES)
        .ok()
        .and_then(|total| SendResponse::read_frame(&data[..total]));
    let mut buf = BytesMut::from(data);
    match frame::decode(&mut buf, frame::MAX_FRAME_BYTES) {
        Ok(Some(cmd)) => {
            let _ = SendMessageResponseHeader::from_command(&cmd);
            if let Some((opaque, response)) = in_place {
                assert_eq!(opaque, cmd.opaque);
                assert_eq!(response, SendResponse::of(&cmd));
            }
        }
        _ => assert!(in_place.is_none(), "read in place, refused by the decoder"),
    }
});
