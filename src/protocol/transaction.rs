//! Transaction headers: END_TRANSACTION (client → broker, oneway; Java
//! `EndTransactionRequestHeader`) and CHECK_TRANSACTION_STATE (broker → client, oneway; Java
//! `CheckTransactionStateRequestHeader`).

use super::command::RemotingCommand;
use super::decode_error::DecodeError;
use super::ext_fields::{CustomHeader, ExtFieldWriter};

/// `commitOrRollback` of END_TRANSACTION (Java `MessageSysFlag.TRANSACTION_*_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndKind {
    /// 0: outcome unknown; the broker checks back later.
    Unknown,
    /// 8: commit; the half message becomes visible.
    Commit,
    /// 12: rollback; the half message is dropped.
    Rollback,
}

impl EndKind {
    /// The number on the wire.
    pub fn as_i64(self) -> i64 {
        match self {
            EndKind::Unknown => 0,
            EndKind::Commit => 8,
            EndKind::Rollback => 12,
        }
    }
}

/// END_TRANSACTION's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTransactionHeader<'a> {
    /// The producer group (namespace applied).
    pub producer_group: &'a str,
    /// The half message's queue offset.
    pub tran_state_table_offset: i64,
    /// The half message's commit-log offset (from its offset message id).
    pub commit_log_offset: i64,
    /// Commit, rollback or unknown.
    pub kind: EndKind,
    /// Whether this answers a CHECK_TRANSACTION_STATE.
    pub from_transaction_check: bool,
    /// The message's unique id (`UNIQ_KEY`).
    pub msg_id: &'a str,
    /// The broker's transaction id, when it gave one.
    pub transaction_id: Option<&'a str>,
    /// The broker name (5.x `bname`; ignored by 4.9.x).
    pub broker_name: Option<&'a str>,
}

impl CustomHeader for EndTransactionHeader<'_> {
    fn write_fields(&self, out: &mut dyn ExtFieldWriter) {
        out.put_str("producerGroup", self.producer_group);
        out.put_i64("tranStateTableOffset", self.tran_state_table_offset);
        out.put_i64("commitLogOffset", self.commit_log_offset);
        out.put_i64("commitOrRollback", self.kind.as_i64());
        out.put_bool("fromTransactionCheck", self.from_transaction_check);
        out.put_str("msgId", self.msg_id);
        if let Some(id) = self.transaction_id {
            out.put_str("transactionId", id);
        }
        if let Some(name) = self.broker_name {
            out.put_str("bname", name);
        }
    }
}

/// What CHECK_TRANSACTION_STATE's header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTransactionState {
    /// The half message's queue offset.
    pub tran_state_table_offset: i64,
    /// The half message's commit-log offset.
    pub commit_log_offset: i64,
    /// The unique id (Java brokers) of the message.
    pub msg_id: Option<String>,
    /// The transaction id.
    pub transaction_id: Option<String>,
    /// The offset message id of the half message.
    pub offset_msg_id: Option<String>,
    /// The broker name (rocketmq-rust and 5.x).
    pub broker_name: Option<String>,
}

impl CheckTransactionState {
    /// Reads the header of a CHECK_TRANSACTION_STATE request.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when an offset is missing or not a number.
    pub fn from_command(command: &RemotingCommand) -> Result<Self, DecodeError> {
        let number = |key: &str| -> Result<i64, DecodeError> {
            let text = command.ext(key).ok_or_else(|| {
                DecodeError::malformed("CHECK_TRANSACTION_STATE", format!("no {key}"))
            })?;
            text.parse().map_err(|_| {
                DecodeError::malformed("CHECK_TRANSACTION_STATE", format!("{key} = {text:?}"))
            })
        };
        let text = |key: &str| command.ext(key).map(str::to_owned);
        Ok(CheckTransactionState {
            tran_state_table_offset: number("tranStateTableOffset")?,
            commit_log_offset: number("commitLogOffset")?,
            msg_id: text("msgId"),
            transaction_id: text("transactionId"),
            offset_msg_id: text("offsetMsgId"),
            broker_name: text("bname"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::LanguageCode;

    struct Collect(Vec<(String, String)>);

    impl ExtFieldWriter for Collect {
        fn put_str(&mut self, key: &str, value: &str) {
            self.0.push((key.to_owned(), value.to_owned()));
        }

        fn put_encoded(&mut self, _: &crate::protocol::ext_fields::EncodedFields) {
            unreachable!("END_TRANSACTION has no pre-encoded fields")
        }
    }

    #[test]
    fn end_transaction_fields_in_java_order() {
        // Java EndTransactionRequestHeader field order; values as Long.toString / Boolean.
        let header = EndTransactionHeader {
            producer_group: "ns%pg",
            tran_state_table_offset: 7,
            commit_log_offset: 1234,
            kind: EndKind::Commit,
            from_transaction_check: true,
            msg_id: "AC11",
            transaction_id: Some("AC11"),
            broker_name: Some("broker-a"),
        };
        let mut fields = Collect(Vec::new());
        header.write_fields(&mut fields);
        let fields = fields.0;
        let expect = [
            ("producerGroup", "ns%pg"),
            ("tranStateTableOffset", "7"),
            ("commitLogOffset", "1234"),
            ("commitOrRollback", "8"),
            ("fromTransactionCheck", "true"),
            ("msgId", "AC11"),
            ("transactionId", "AC11"),
            ("bname", "broker-a"),
        ];
        assert_eq!(fields.len(), expect.len());
        for ((k, v), (ek, ev)) in fields.iter().zip(expect) {
            assert_eq!((k.as_str(), v.as_str()), (ek, ev));
        }
        assert_eq!(EndKind::Rollback.as_i64(), 12);
        assert_eq!(EndKind::Unknown.as_i64(), 0);
    }

    #[test]
    fn check_header_needs_numbers() {
        let mut cmd = RemotingCommand::request(39, 1, LanguageCode::JAVA, 407);
        cmd.push_ext("tranStateTableOffset", "3");
        cmd.push_ext("commitLogOffset", "99");
        cmd.push_ext("msgId", "U");
        let check = CheckTransactionState::from_command(&cmd).unwrap();
        assert_eq!(check.commit_log_offset, 99);
        assert_eq!(check.msg_id.as_deref(), Some("U"));
        assert_eq!(check.transaction_id, None);
        let mut bad = RemotingCommand::request(39, 1, LanguageCode::JAVA, 407);
        bad.push_ext("tranStateTableOffset", "x");
        assert!(CheckTransactionState::from_command(&bad).is_err());
    }
}
