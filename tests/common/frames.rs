//! Blocking frame I/O for the test side: one reader and one writer, shared by the fake broker,
//! the read-back client and the tests that speak the protocol by hand.

use std::io::{Read, Write};

use bytes::BytesMut;
use rocketmq_tpc::protocol::frame;
use rocketmq_tpc::protocol::RemotingCommand;
use rocketmq_tpc::HeaderEncoding;

/// Reads whole frames from a blocking stream, keeping what follows a frame for the next call.
#[derive(Default)]
pub struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    /// The next whole frame. `Err` says why there is none: the peer closed, the read failed (or
    /// hit the stream's read timeout), or the bytes are not a frame.
    pub fn next(&mut self, stream: &mut impl Read) -> Result<RemotingCommand, String> {
        let mut chunk = [0u8; 65536];
        loop {
            match frame::decode(&mut self.buf, frame::MAX_FRAME_BYTES) {
                Ok(Some(command)) => return Ok(command),
                Ok(None) => {}
                Err(e) => return Err(format!("undecodable frame: {e:?}")),
            }
            match stream.read(&mut chunk) {
                Ok(0) => return Err("the peer closed the connection".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Drops buffered bytes (after a reconnect).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// Writes `command` as one JSON-header frame.
pub fn write_command(stream: &mut impl Write, command: &RemotingCommand) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    frame::encode_command(
        &mut out,
        HeaderEncoding::Json,
        command,
        frame::MAX_FRAME_BYTES,
    )
    .expect("a test frame fits");
    stream.write_all(&out)
}
