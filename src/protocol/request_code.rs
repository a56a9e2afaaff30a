//! Request codes a producer sends or receives (Java `RequestCode`).

/// A RemotingCommand request code (Java `org.apache.rocketmq.common.protocol.RequestCode`).
///
/// Only the codes this client uses are named; any other number is kept in `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestCode {
    /// 10: SEND_MESSAGE with the long-named header.
    SendMessage,
    /// 11: PULL_MESSAGE (used by tests to read back what the broker stored).
    PullMessage,
    /// 30: GET_MAX_OFFSET.
    GetMaxOffset,
    /// 34: HEART_BEAT.
    HeartBeat,
    /// 35: UNREGISTER_CLIENT.
    UnregisterClient,
    /// 39: CHECK_TRANSACTION_STATE (broker → client).
    CheckTransactionState,
    /// 105: GET_ROUTEINFO_BY_TOPIC (NameServer).
    GetRouteInfoByTopic,
    /// 310: SEND_MESSAGE_V2 with the short-named header.
    SendMessageV2,
    /// 320: SEND_BATCH_MESSAGE.
    SendBatchMessage,
    /// 37: END_TRANSACTION (client → broker, oneway).
    EndTransaction,
    /// 325: SEND_REPLY_MESSAGE_V2 (a reply of request-reply, V2 header).
    SendReplyMessageV2,
    /// 326: PUSH_REPLY_MESSAGE_TO_CLIENT (broker → client).
    PushReplyMessageToClient,
    /// Any other code.
    Other(i32),
}

impl RequestCode {
    /// The number on the wire.
    pub fn as_i32(self) -> i32 {
        match self {
            RequestCode::SendMessage => 10,
            RequestCode::PullMessage => 11,
            RequestCode::GetMaxOffset => 30,
            RequestCode::HeartBeat => 34,
            RequestCode::UnregisterClient => 35,
            RequestCode::CheckTransactionState => 39,
            RequestCode::GetRouteInfoByTopic => 105,
            RequestCode::SendMessageV2 => 310,
            RequestCode::SendBatchMessage => 320,
            RequestCode::EndTransaction => 37,
            RequestCode::SendReplyMessageV2 => 325,
            RequestCode::PushReplyMessageToClient => 326,
            RequestCode::Other(code) => code,
        }
    }

    /// The code for a number read from the wire.
    pub fn from_i32(code: i32) -> Self {
        match code {
            10 => RequestCode::SendMessage,
            11 => RequestCode::PullMessage,
            30 => RequestCode::GetMaxOffset,
            34 => RequestCode::HeartBeat,
            35 => RequestCode::UnregisterClient,
            39 => RequestCode::CheckTransactionState,
            105 => RequestCode::GetRouteInfoByTopic,
            310 => RequestCode::SendMessageV2,
            320 => RequestCode::SendBatchMessage,
            37 => RequestCode::EndTransaction,
            325 => RequestCode::SendReplyMessageV2,
            326 => RequestCode::PushReplyMessageToClient,
            other => RequestCode::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for code in [10, 11, 30, 34, 35, 37, 39, 105, 310, 320, 325, 326, 4242] {
            assert_eq!(RequestCode::from_i32(code).as_i32(), code);
        }
    }
}
