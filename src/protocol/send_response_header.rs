//! `SendMessageResponseHeader` plus the `MSG_REGION` / `TRACE_ON` ext fields of a send response.

use super::command::RemotingCommand;
use super::decode_error::DecodeError;
use super::ext_fields::{parse_i64, CustomHeader, ExtFieldWriter};

/// Region reported when the broker names none (Java `MixAll.DEFAULT_REGION`... `DefaultRegion`).
pub const DEFAULT_REGION: &str = "DefaultRegion";

/// The decoded response header of a successful (or stored-with-warning) send, borrowing its text
/// from the response (nothing is copied to decode it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendMessageResponseHeader<'a> {
    /// Offset message id (batch: comma-joined list).
    pub msg_id: &'a str,
    /// Queue the broker stored into.
    pub queue_id: i32,
    /// Queue offset (batch: of the first message).
    pub queue_offset: i64,
    /// Transaction id (5.x sets it to the UNIQ_KEY).
    pub transaction_id: Option<&'a str>,
    /// `MSG_REGION`, default `DefaultRegion`.
    pub region_id: &'a str,
    /// `TRACE_ON` != "false".
    pub trace_on: bool,
}

impl<'a> SendMessageResponseHeader<'a> {
    /// Reads the header from a response's ext fields; `msgId`, `queueId` and `queueOffset` are required.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn from_command(command: &'a RemotingCommand) -> Result<Self, DecodeError> {
        SendResponseFields::of(command).header()
    }
}

/// The fields of a send response that its header is made of, as found (one pass over the
/// fields; a repeated key keeps its last value, as in Java's map).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendResponseFields<'a> {
    msg_id: Option<&'a str>,
    queue_id: Option<&'a str>,
    queue_offset: Option<&'a str>,
    transaction_id: Option<&'a str>,
    region_id: Option<&'a str>,
    trace_on: Option<&'a str>,
}

impl<'a> SendResponseFields<'a> {
    /// The fields of `command`.
    pub fn of(command: &'a RemotingCommand) -> Self {
        let mut fields = SendResponseFields::default();
        for (key, value) in command.ext_fields.iter() {
            fields.note(key, value);
        }
        fields
    }

    /// Takes note of one field (others are ignored).
    #[inline]
    pub fn note(&mut self, key: &'a str, value: &'a str) {
        let slot = match key {
            "msgId" => &mut self.msg_id,
            "queueId" => &mut self.queue_id,
            "queueOffset" => &mut self.queue_offset,
            "transactionId" => &mut self.transaction_id,
            "MSG_REGION" => &mut self.region_id,
            "TRACE_ON" => &mut self.trace_on,
            _ => return,
        };
        *slot = Some(value);
    }

    /// The header they make; `msgId`, `queueId` and `queueOffset` are required.
    pub fn header(&self) -> Result<SendMessageResponseHeader<'a>, DecodeError> {
        let number = |key: &'static str, text: Option<&str>| -> Result<i64, DecodeError> {
            let text = text.ok_or_else(|| missing(key))?;
            parse_i64(text).ok_or_else(|| {
                DecodeError::malformed("send response", format!("{key} is not a number: {text}"))
            })
        };
        let queue_id = number("queueId", self.queue_id)?;
        let queue_id = i32::try_from(queue_id).map_err(|_| {
            DecodeError::malformed("send response", format!("queueId {queue_id} out of range"))
        })?;
        Ok(SendMessageResponseHeader {
            msg_id: self.msg_id.ok_or_else(|| missing("msgId"))?,
            queue_id,
            queue_offset: number("queueOffset", self.queue_offset)?,
            transaction_id: self.transaction_id,
            region_id: self.region_id.unwrap_or(DEFAULT_REGION),
            trace_on: self.trace_on != Some("false"),
        })
    }
}

/// A send's answer as the send path reads it: code, remark and the header's fields, borrowed
/// from a decoded command or straight from the frame in the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendResponse<'a> {
    /// The response code.
    pub code: i32,
    /// The remark, if any.
    pub remark: Option<&'a str>,
    /// The header's fields (read into a header only when the code says stored).
    pub fields: SendResponseFields<'a>,
}

impl<'a> SendResponse<'a> {
    /// The answer `command` carries.
    pub fn of(command: &'a RemotingCommand) -> Self {
        SendResponse {
            code: command.code,
            remark: command.remark.as_deref(),
            fields: SendResponseFields::of(command),
        }
    }

    /// The answer in `frame` (one whole frame) and the opaque it answers, when it is a clean
    /// binary response (see [`super::binary_response`]); `None` leaves it to the general decoder.
    #[inline]
    pub fn read_frame(frame: &'a [u8]) -> Option<(i32, Self)> {
        let mut fields = SendResponseFields::default();
        let head = super::binary_response::read(frame, |key, value| fields.note(key, value))?;
        Some((
            head.opaque,
            SendResponse {
                code: head.code,
                remark: head.remark,
                fields,
            },
        ))
    }
}

fn missing(key: &str) -> DecodeError {
    DecodeError::malformed("send response", format!("missing {key}"))
}

impl CustomHeader for SendMessageResponseHeader<'_> {
    fn write_fields(&self, out: &mut dyn ExtFieldWriter) {
        out.put_str("msgId", self.msg_id);
        out.put_i64("queueId", self.queue_id as i64);
        out.put_i64("queueOffset", self.queue_offset);
        if let Some(id) = &self.transaction_id {
            out.put_str("transactionId", id);
        }
        out.put_str("MSG_REGION", self.region_id);
        out.put_bool("TRACE_ON", self.trace_on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::LanguageCode;

    #[test]
    fn a_frame_reads_like_its_decoded_command() {
        use crate::protocol::frame::{self, MAX_FRAME_BYTES};
        use crate::protocol::header_json::CommandHead;
        use crate::protocol::HeaderEncoding;
        let head = CommandHead {
            code: 11,
            language: LanguageCode::JAVA,
            version: 1,
            opaque: 9,
            flag: crate::protocol::command::FLAG_RESPONSE,
            remark: Some("slow"),
        };
        let fields = [
            ("msgId", "7F00000100002A9F0000000000000000"),
            ("queueId", "1"),
            ("queueOffset", "5"),
            ("MSG_REGION", "r"),
            ("TRACE_ON", "false"),
            ("other", "x"),
        ];
        let mut out = bytes::BytesMut::new();
        frame::encode(
            &mut out,
            HeaderEncoding::Binary,
            &head,
            &fields,
            b"",
            MAX_FRAME_BYTES,
        )
        .unwrap();
        let (opaque, fast) = SendResponse::read_frame(&out).expect("clean");
        let command = frame::decode(&mut out.clone(), MAX_FRAME_BYTES)
            .unwrap()
            .unwrap();
        assert_eq!(opaque, 9);
        assert_eq!(fast, SendResponse::of(&command));
        let header = fast.fields.header().unwrap();
        assert_eq!(
            (
                header.queue_id,
                header.queue_offset,
                header.region_id,
                header.trace_on
            ),
            (1, 5, "r", false)
        );
    }

    #[test]
    fn decode_defaults_and_errors() {
        let mut cmd = RemotingCommand::request(0, 1, LanguageCode::JAVA, 1);
        cmd.push_ext("msgId", "7F00000100002A9F0000000000000000");
        cmd.push_ext("queueId", "2");
        cmd.push_ext("queueOffset", "41");
        let h = SendMessageResponseHeader::from_command(&cmd).unwrap();
        assert_eq!(h.region_id, DEFAULT_REGION);
        assert!(h.trace_on);
        assert_eq!(h.queue_offset, 41);
        cmd.push_ext("queueId", "x");
        assert!(SendMessageResponseHeader::from_command(&cmd).is_err());
        let empty = RemotingCommand::request(0, 1, LanguageCode::JAVA, 1);
        assert!(SendMessageResponseHeader::from_command(&empty).is_err());
    }
}
