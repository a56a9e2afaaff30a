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
    pub fn from_command(command: &'a RemotingCommand) -> Result<Self, DecodeError> {
        // One pass over the fields; a repeated key keeps its last value, as in Java's map.
        let (mut msg_id, mut queue_id, mut queue_offset) = (None, None, None);
        let (mut transaction_id, mut region_id, mut trace_on) = (None, None, None);
        for (key, value) in command.ext_fields.iter() {
            match key {
                "msgId" => msg_id = Some(value),
                "queueId" => queue_id = Some(value),
                "queueOffset" => queue_offset = Some(value),
                "transactionId" => transaction_id = Some(value),
                "MSG_REGION" => region_id = Some(value),
                "TRACE_ON" => trace_on = Some(value),
                _ => {}
            }
        }
        let number = |key: &'static str, text: Option<&str>| -> Result<i64, DecodeError> {
            let text = text.ok_or_else(|| missing(key))?;
            parse_i64(text).ok_or_else(|| {
                DecodeError::malformed("send response", format!("{key} is not a number: {text}"))
            })
        };
        let queue_id = number("queueId", queue_id)?;
        let queue_id = i32::try_from(queue_id).map_err(|_| {
            DecodeError::malformed("send response", format!("queueId {queue_id} out of range"))
        })?;
        Ok(SendMessageResponseHeader {
            msg_id: msg_id.ok_or_else(|| missing("msgId"))?,
            queue_id,
            queue_offset: number("queueOffset", queue_offset)?,
            transaction_id,
            region_id: region_id.unwrap_or(DEFAULT_REGION),
            trace_on: trace_on != Some("false"),
        })
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
