//! Response codes (Java `RemotingSysResponseCode` + `ResponseCode`), mapped in one place.

/// A response code sent by a NameServer or broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseCode {
    /// 0
    Success,
    /// 1
    SystemError,
    /// 2: back-pressure (the rocketmq-rust broker also uses it above 4,096 requests in flight).
    SystemBusy,
    /// 3
    RequestCodeNotSupported,
    /// 4
    TransactionFailed,
    /// 10: stored, flush to disk not confirmed.
    FlushDiskTimeout,
    /// 11: stored, no slave available.
    SlaveNotAvailable,
    /// 12: stored, slave sync not confirmed.
    FlushSlaveTimeout,
    /// 13
    MessageIllegal,
    /// 14
    ServiceNotAvailable,
    /// 15
    VersionNotSupported,
    /// 16
    NoPermission,
    /// 17
    TopicNotExist,
    /// 24
    SubscriptionNotExist,
    /// 204
    NoBuyerId,
    /// 205
    NotInCurrentUnit,
    /// 215
    FlowControl,
    /// 1500 (5.x): the server is shutting down.
    GoAway,
    /// Any other number.
    Other(i32),
}

impl ResponseCode {
    /// The code for a number read from the wire.
    pub fn from_i32(code: i32) -> Self {
        use ResponseCode::*;
        match code {
            0 => Success,
            1 => SystemError,
            2 => SystemBusy,
            3 => RequestCodeNotSupported,
            4 => TransactionFailed,
            10 => FlushDiskTimeout,
            11 => SlaveNotAvailable,
            12 => FlushSlaveTimeout,
            13 => MessageIllegal,
            14 => ServiceNotAvailable,
            15 => VersionNotSupported,
            16 => NoPermission,
            17 => TopicNotExist,
            24 => SubscriptionNotExist,
            204 => NoBuyerId,
            205 => NotInCurrentUnit,
            215 => FlowControl,
            1500 => GoAway,
            other => Other(other),
        }
    }

    /// The number on the wire.
    pub fn as_i32(self) -> i32 {
        use ResponseCode::*;
        match self {
            Success => 0,
            SystemError => 1,
            SystemBusy => 2,
            RequestCodeNotSupported => 3,
            TransactionFailed => 4,
            FlushDiskTimeout => 10,
            SlaveNotAvailable => 11,
            FlushSlaveTimeout => 12,
            MessageIllegal => 13,
            ServiceNotAvailable => 14,
            VersionNotSupported => 15,
            NoPermission => 16,
            TopicNotExist => 17,
            SubscriptionNotExist => 24,
            NoBuyerId => 204,
            NotInCurrentUnit => 205,
            FlowControl => 215,
            GoAway => 1500,
            Other(code) => code,
        }
    }

    /// Whether the Java producer (5.3.1+) retries a send answered with this code, on another broker.
    ///
    /// `DefaultMQProducer.retryResponseCodes` = {17, 14, 1, 16, 204, 205} plus 2 (5.3.0+) and 1500 (5.3.1+).
    /// SYSTEM_BUSY is included on purpose: the rocketmq-rust broker uses it for back-pressure.
    pub fn is_retryable_for_send(self) -> bool {
        use ResponseCode::*;
        matches!(
            self,
            TopicNotExist
                | ServiceNotAvailable
                | SystemError
                | NoPermission
                | NoBuyerId
                | NotInCurrentUnit
                | SystemBusy
                | GoAway
        )
    }
}

impl std::fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseCode::Other(code) => write!(f, "code {code}"),
            named => write!(f, "{named:?} ({})", named.as_i32()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for code in (-5..300).chain([1500, 4242]) {
            assert_eq!(ResponseCode::from_i32(code).as_i32(), code);
        }
    }

    #[test]
    fn retry_set_matches_java_5_3_1() {
        let retried: Vec<i32> = (0..2000)
            .filter(|c| ResponseCode::from_i32(*c).is_retryable_for_send())
            .collect();
        assert_eq!(retried, vec![1, 2, 14, 16, 17, 204, 205, 1500]);
    }
}
