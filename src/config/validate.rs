//! Checks that a [`ProducerConfig`]'s settings can work together; every error names the setting.

use std::time::Duration;

use super::{split_host_port, CoreConfig, CoreSelection, ProducerConfig};
use crate::error::Error;

impl CoreConfig {
    fn validate(
        &self,
        name: &str,
        max_message_size: usize,
        send_timeout: Duration,
    ) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        if self.io_memory < 64 * 1024 {
            return bad(format!(
                "{name}.io_memory {} is under glommio's 64 KiB minimum",
                self.io_memory
            ));
        }
        for (key, value) in [
            ("inbox_capacity", self.inbox_capacity),
            ("max_inflight", self.max_inflight),
            (
                "max_inflight_per_connection",
                self.max_inflight_per_connection,
            ),
            ("ring_depth", self.ring_depth),
            ("connections_per_broker", self.connections_per_broker),
        ] {
            if value == 0 {
                return bad(format!("{name}.{key} must be above zero"));
            }
        }
        if self.max_buffered_bytes < max_message_size {
            return bad(format!(
                "{name}.max_buffered_bytes {} is below max_message_size {max_message_size}",
                self.max_buffered_bytes
            ));
        }
        if let Some(batch) = &self.auto_batch {
            if batch.max_messages == 0 || batch.max_bytes == 0 {
                return bad(format!(
                    "{name}.batch_max_messages and batch_max_bytes must be above zero"
                ));
            }
            if batch.max_bytes > max_message_size {
                return bad(format!(
                    "{name}.batch_max_bytes {} is over max_message_size {max_message_size}",
                    batch.max_bytes
                ));
            }
            // A message lingering its whole budget would time out before it is sent.
            if batch.linger >= send_timeout {
                return bad(format!(
                    "{name}.linger {:?} must be below send_timeout {send_timeout:?}",
                    batch.linger
                ));
            }
        }
        Ok(())
    }
}

impl ProducerConfig {
    /// The settings of the core running on `cpu`.
    pub fn core_for(&self, cpu: usize) -> &CoreConfig {
        self.per_cpu.get(&cpu).unwrap_or(&self.core)
    }

    /// Checks that the settings can work together.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), Error> {
        if self.producer_group.trim().is_empty() {
            return Err(Error::InvalidConfig {
                reason: "producer_group must be set".into(),
            });
        }
        if self.namesrv_addrs.is_empty() {
            return Err(Error::InvalidConfig {
                reason: "namesrv_addrs must name at least one NameServer".into(),
            });
        }
        self.validate_values()
    }

    /// Checks every value that is set, without requiring `producer_group` and `namesrv_addrs`
    /// (a config file may leave them to the program).
    pub(crate) fn validate_values(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        let group = self.producer_group.trim();
        if group.is_empty() {
            return self.validate_rest();
        }
        if group == "DEFAULT_PRODUCER" {
            return bad("producer_group DEFAULT_PRODUCER is reserved; choose your own".into());
        }
        if group.len() > 255
            || !group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-'))
        {
            return bad(format!(
                "producer_group {group:?} must be 1-255 characters from [%|a-zA-Z0-9_-]"
            ));
        }
        self.validate_rest()
    }

    fn validate_rest(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        for addr in &self.namesrv_addrs {
            if split_host_port(addr).is_none() {
                return bad(format!("NameServer address {addr:?} is not host:port"));
            }
        }
        if self.send_timeout.is_zero() || self.attempt_timeout.is_zero() {
            return bad("send_timeout and attempt_timeout must be above zero".into());
        }
        if self.compress_level > 9 {
            return bad(format!(
                "compress_level {} is outside 0..=9",
                self.compress_level
            ));
        }
        if self.max_message_size == 0 {
            return bad("max_message_size must be above zero".into());
        }
        if self.default_topic_queue_nums <= 0 {
            return bad("default_topic_queue_nums must be above zero".into());
        }
        self.core
            .validate("core", self.max_message_size, self.send_timeout)?;
        for (cpu, core) in &self.per_cpu {
            core.validate(
                &format!("core (cpu {cpu})"),
                self.max_message_size,
                self.send_timeout,
            )?;
        }
        let faults = &self.fault_table;
        if faults.latency_max.len() != faults.not_available.len()
            || !faults.latency_max.windows(2).all(|w| w[0] <= w[1])
        {
            return bad(format!(
                "fault_table: latency_max ({} values, ascending) and not_available ({} values) must pair up",
                faults.latency_max.len(),
                faults.not_available.len()
            ));
        }
        if self.max_topics == 0 {
            return bad("max_topics must be above zero".into());
        }
        if let Some(namespace) = &self.namespace {
            crate::namespace::validate(namespace)?;
        }
        if let CoreSelection::Count(0) = self.cores {
            return bad("cores must be at least 1".into());
        }
        if let CoreSelection::List(list) = &self.cores {
            if list.is_empty() {
                return bad("the CPU list is empty".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AutoBatch;

    fn good() -> ProducerConfig {
        ProducerConfig {
            producer_group: "pg".into(),
            namesrv_addrs: vec!["127.0.0.1:9876".into()],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_validate() {
        good().validate().unwrap();
        assert_eq!(good().send_timeout, Duration::from_secs(3));
    }

    #[test]
    fn errors_name_the_setting() {
        let mut c = good();
        c.producer_group = "DEFAULT_PRODUCER".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("DEFAULT_PRODUCER"));
        let mut c = good();
        c.namesrv_addrs = vec!["nope".into()];
        assert!(c.validate().unwrap_err().to_string().contains("host:port"));
        let mut c = good();
        c.core.io_memory = 10;
        assert!(c.validate().unwrap_err().to_string().contains("io_memory"));
    }

    #[test]
    fn linger_must_be_below_the_send_timeout() {
        let mut c = good();
        c.core.auto_batch = Some(AutoBatch {
            linger: c.send_timeout,
            ..Default::default()
        });
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("core.linger") && e.contains("send_timeout"),
            "{e}"
        );
        let mut c = good();
        c.per_cpu.insert(
            3,
            CoreConfig {
                auto_batch: Some(AutoBatch {
                    linger: Duration::from_secs(60),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("linger") && e.contains("cpu 3"), "{e}");
        let mut c = good();
        c.core.auto_batch = Some(AutoBatch {
            linger: Duration::from_millis(5),
            ..Default::default()
        });
        c.validate().unwrap();
    }

    fn extreme_duration() -> impl proptest::strategy::Strategy<Value = Duration> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::MAX),
            Just(Duration::MAX - Duration::from_nanos(1)),
            Just(Duration::from_secs(u64::MAX / 2)),
            (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            (0u64..10_000).prop_map(Duration::from_millis),
        ]
    }

    proptest::proptest! {
        /// Validation of any durations is `Ok` or an `InvalidConfig` naming a key, never a panic.
        #[test]
        fn extreme_durations_validate_without_panic(
            send_timeout in extreme_duration(),
            attempt_timeout in extreme_duration(),
            route_refresh_interval in extreme_duration(),
            heartbeat_interval in extreme_duration(),
            spin_before_park in extreme_duration(),
            linger in proptest::option::of(extreme_duration()),
        ) {
            let mut c = good();
            c.send_timeout = send_timeout;
            c.attempt_timeout = attempt_timeout;
            c.route_refresh_interval = route_refresh_interval;
            c.heartbeat_interval = heartbeat_interval;
            c.core.spin_before_park = spin_before_park;
            c.core.auto_batch = linger.map(|linger| AutoBatch { linger, ..Default::default() });
            match c.validate() {
                Ok(()) => {
                    proptest::prop_assert!(linger.is_none_or(|l| l < send_timeout));
                }
                Err(Error::InvalidConfig { reason }) => {
                    proptest::prop_assert!(reason.contains("timeout") || reason.contains("linger") || reason.contains("interval") || reason.contains("spin"), "{}", reason);
                }
                Err(other) => proptest::prop_assert!(false, "{}", other),
            }
        }
    }

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("127.0.0.1:9876"), Some(("127.0.0.1", 9876)));
        assert_eq!(split_host_port("[::1]:10911"), Some(("::1", 10911)));
        assert_eq!(split_host_port("::1:10911"), Some(("::1", 10911)));
        assert_eq!(split_host_port(":1"), None);
        assert_eq!(split_host_port("a:x"), None);
    }
}
