//! [`SendExtras`]: what a send adds beyond the message (a chosen queue, the namespace's wire
//! topic, system properties of transactions and request-reply), boxed so plain sends carry one
//! null pointer.

use crate::config::ProducerConfig;
use crate::protocol::properties::keys;
use crate::target::SendTarget;

/// What a send adds beyond the message itself. Rare (ordered sends, namespaces, transactions,
/// request-reply), so it travels boxed and plain sends pay nothing for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SendExtras {
    /// Where the send goes.
    pub target: SendTarget,
    /// Whether a targeted send may be retried.
    pub retry_targeted: bool,
    /// The topic as sent (`namespace%topic`), when a namespace is configured.
    pub wire_topic: Option<String>,
    /// Properties the client itself sets (`TRAN_MSG`, `PGROUP`, `CORRELATION_ID`, `INSTANCE_ID`...),
    /// which [`Message::validate`] refuses from users.
    pub system_properties: Vec<(&'static str, String)>,
    /// Bits OR-ed into the sysFlag (e.g. `TRANSACTION_PREPARED`).
    pub sys_flag: i32,
    /// Sent with SEND_REPLY_MESSAGE_V2 (325) instead of SEND_MESSAGE_V2.
    pub reply_message: bool,
}

impl SendExtras {
    /// Extras for `options`, or `None` when they ask for nothing beyond a plain send.
    pub(crate) fn from_options(options: &crate::send_options::SendOptions) -> Option<Box<Self>> {
        if options.target.is_auto() {
            return None;
        }
        Some(Box::new(SendExtras {
            target: options.target.clone(),
            retry_targeted: options.retry_targeted,
            ..SendExtras::default()
        }))
    }

    /// Applies the producer's namespace (Java `ClientConfig.withNamespace` + the `INSTANCE_ID`
    /// property `sendKernelImpl` adds).
    pub(super) fn with_namespace(
        extras: Option<Box<Self>>,
        topic: &str,
        config: &ProducerConfig,
    ) -> Option<Box<Self>> {
        let Some(namespace) = config.namespace.as_deref() else {
            return extras;
        };
        let mut extras = extras.unwrap_or_default();
        extras.wire_topic = Some(crate::namespace::wrap(namespace, topic));
        extras
            .system_properties
            .push((keys::INSTANCE_ID, namespace.to_owned()));
        Some(extras)
    }
}
