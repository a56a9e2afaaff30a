//! Loading a [`ProducerConfig`] from TOML: global settings, defaults for every core, and `[[core]]`
//! entries for individual CPUs.
//!
//! ```toml
//! producer_group = "orders"
//! namesrv = "10.0.0.1:9876;10.0.0.2:9876"
//! send_timeout = "3s"            # durations: "250us", "5ms", "3s", "1m"
//! compress_over = "4KiB"         # sizes: bytes, or "64KiB", "1MiB"
//!
//! [core_defaults]                # every core without its own entry
//! max_inflight = 8192
//! io_memory = "1MiB"
//!
//! [[core]]                       # one producer core on CPU 0 with its own settings
//! cpu = 0
//! auto_batch = true
//! linger = "100us"
//!
//! [[core]]
//! cpu = 1
//! ```
//!
//! Unknown keys and impossible values are errors that name the key. When `[[core]]` entries are
//! present they also choose the CPUs (unless `cores` says otherwise).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{CoreConfig, CoreSelection, ProducerConfig, QueueFullPolicy};
use crate::error::Error;
use crate::protocol::HeaderEncoding;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    producer_group: Option<String>,
    namesrv: Option<String>,
    send_timeout: Option<String>,
    attempt_timeout: Option<String>,
    retries_when_send_failed: Option<u32>,
    retries_when_send_async_failed: Option<u32>,
    retry_another_broker_when_not_store_ok: Option<bool>,
    compress_over: Option<SizeValue>,
    compress_level: Option<u32>,
    max_message_size: Option<SizeValue>,
    header_encoding: Option<String>,
    version: Option<i32>,
    route_refresh_interval: Option<String>,
    heartbeat_interval: Option<String>,
    client_ip: Option<String>,
    instance_name: Option<String>,
    namespace: Option<String>,
    max_topics: Option<usize>,
    vip_channel: Option<bool>,
    compress_type: Option<String>,
    trace_topic: Option<String>,
    cores: Option<CoresValue>,
    queue_full: Option<String>,
    core_defaults: Option<FileCore>,
    core: Option<Vec<FileCore>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCore {
    cpu: Option<usize>,
    io_memory: Option<SizeValue>,
    ring_depth: Option<usize>,
    inbox_capacity: Option<usize>,
    max_inflight: Option<usize>,
    max_inflight_per_connection: Option<usize>,
    max_buffered_bytes: Option<SizeValue>,
    connections_per_broker: Option<usize>,
    spin_before_park: Option<String>,
    auto_batch: Option<bool>,
    linger: Option<String>,
    batch_max_messages: Option<usize>,
    batch_max_bytes: Option<SizeValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum CoresValue {
    Count(usize),
    List(Vec<usize>),
}

fn bad(reason: String) -> Error {
    Error::InvalidConfig { reason }
}

/// Parses `"250us"`, `"5ms"`, `"3s"`, `"1.5s"`, `"2m"`, `"1h"` (`µs` accepted for `us`).
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, Error> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        bad(format!(
            "{key} = {text:?}: expected a duration like \"5ms\" or \"3s\""
        ))
    })?;
    let seconds = match unit.trim() {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(bad(format!(
                "{key} = {text:?}: unknown unit {other:?} (use ns, us, ms, s, m, h)"
            )))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad(format!("{key} = {text:?} is not a valid duration")));
    }
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| bad(format!("{key} = {text:?} is too long for a duration")))
}

/// Parses a size: a number of bytes, or `"64KiB"`, `"1MiB"`, `"4k"`, `"1m"`.
fn parse_size(key: &str, value: &SizeValue) -> Result<usize, Error> {
    let too_large = |text: &dyn std::fmt::Display| bad(format!("{key} = {text} is too large"));
    let text = match value {
        SizeValue::Bytes(n) => return usize::try_from(*n).map_err(|_| too_large(n)),
        SizeValue::Text(t) => t.trim().to_ascii_lowercase(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: usize = number.parse().map_err(|_| {
        bad(format!(
            "{key} = {text:?}: expected a size like 4096 or \"64KiB\""
        ))
    })?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => return Err(bad(format!("{key} = {text:?}: unknown unit {other:?}"))),
    };
    n.checked_mul(mult)
        .ok_or_else(|| too_large(&format_args!("{text:?}")))
}

fn apply_core(name: &str, file: &FileCore, base: &CoreConfig) -> Result<CoreConfig, Error> {
    let mut core = base.clone();
    let key = |k: &str| format!("{name}.{k}");
    if let Some(v) = &file.io_memory {
        core.io_memory = parse_size(&key("io_memory"), v)?;
    }
    if let Some(v) = file.ring_depth {
        core.ring_depth = v;
    }
    if let Some(v) = file.inbox_capacity {
        core.inbox_capacity = v;
    }
    if let Some(v) = file.max_inflight {
        core.max_inflight = v;
    }
    if let Some(v) = file.max_inflight_per_connection {
        core.max_inflight_per_connection = v;
    }
    if let Some(v) = &file.max_buffered_bytes {
        core.max_buffered_bytes = parse_size(&key("max_buffered_bytes"), v)?;
    }
    if let Some(v) = file.connections_per_broker {
        core.connections_per_broker = v;
    }
    if let Some(v) = &file.spin_before_park {
        core.spin_before_park = parse_duration(&key("spin_before_park"), v)?;
    }
    let batch_keys = file.linger.is_some()
        || file.batch_max_messages.is_some()
        || file.batch_max_bytes.is_some();
    match file.auto_batch {
        Some(false) => core.auto_batch = None,
        Some(true) => core.auto_batch = Some(core.auto_batch.unwrap_or_default()),
        None if batch_keys && core.auto_batch.is_none() => {
            return Err(bad(format!(
                "{name}: linger / batch_max_* are set but auto_batch is not true"
            )))
        }
        None => {}
    }
    if let Some(batch) = core.auto_batch.as_mut() {
        if let Some(v) = &file.linger {
            batch.linger = parse_duration(&key("linger"), v)?;
        }
        if let Some(v) = file.batch_max_messages {
            batch.max_messages = v;
        }
        if let Some(v) = &file.batch_max_bytes {
            batch.max_bytes = parse_size(&key("batch_max_bytes"), v)?;
        }
    }
    Ok(core)
}

impl ProducerConfig {
    /// Reads a TOML file; [`ProducerConfig::from_toml_str`] describes the format.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the file, and the key when one is wrong.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ProducerConfig, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml_str(&text).map_err(|e| match e {
            Error::InvalidConfig { reason } => bad(format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    /// Parses TOML text over the defaults and validates the result.
    ///
    /// Global settings come first, then `[core_defaults]` for every core without its own entry
    /// and `[[core]]` entries for individual CPUs (which, when present, also choose the CPUs
    /// unless `cores` says otherwise). Durations are `"250us"`, `"5ms"`, `"3s"`, `"1m"`; sizes
    /// are bytes or `"64KiB"`, `"1MiB"`. Unknown keys and impossible values are errors that
    /// name the key.
    ///
    /// ```
    /// use rocketmq_tpc::ProducerConfig;
    ///
    /// let config = ProducerConfig::from_toml_str(r#"
    /// producer_group = "orders"
    /// namesrv = "10.0.0.1:9876;10.0.0.2:9876"
    /// send_timeout = "3s"            # durations: "250us", "5ms", "3s", "1m"
    /// compress_over = "4KiB"         # sizes: bytes, or "64KiB", "1MiB"
    ///
    /// [core_defaults]                # every core without its own entry
    /// max_inflight = 8192
    /// io_memory = "1MiB"
    ///
    /// [[core]]                       # one producer core on CPU 0 with its own settings
    /// cpu = 0
    /// auto_batch = true
    /// linger = "100us"
    ///
    /// [[core]]
    /// cpu = 1
    /// "#)?;
    /// assert_eq!(config.producer_group, "orders");
    /// assert_eq!(config.core_for(0).max_inflight, 8192);
    /// # Ok::<(), rocketmq_tpc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the key that is unknown or wrong.
    pub fn from_toml_str(text: &str) -> Result<ProducerConfig, Error> {
        let file: FileConfig = toml::from_str(text)
            .map_err(|e| bad(e.message().to_owned() + &location(text, e.span())))?;
        let mut c = ProducerConfig::default();
        if let Some(v) = file.producer_group {
            c.producer_group = v;
        }
        if let Some(v) = file.namesrv {
            c.namesrv_addrs = v
                .split(';')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = &file.send_timeout {
            c.send_timeout = parse_duration("send_timeout", v)?;
        }
        if let Some(v) = &file.attempt_timeout {
            c.attempt_timeout = parse_duration("attempt_timeout", v)?;
        }
        if let Some(v) = file.retries_when_send_failed {
            c.retries_when_send_failed = v;
        }
        if let Some(v) = file.retries_when_send_async_failed {
            c.retries_when_send_async_failed = v;
        }
        if let Some(v) = file.retry_another_broker_when_not_store_ok {
            c.retry_another_broker_when_not_store_ok = v;
        }
        if let Some(v) = &file.compress_over {
            c.compress_over = parse_size("compress_over", v)?;
        }
        if let Some(v) = file.compress_level {
            c.compress_level = v;
        }
        if let Some(v) = &file.max_message_size {
            c.max_message_size = parse_size("max_message_size", v)?;
        }
        if let Some(v) = &file.header_encoding {
            c.header_encoding = match v.to_ascii_lowercase().as_str() {
                "binary" | "rocketmq" => HeaderEncoding::Binary,
                "json" => HeaderEncoding::Json,
                other => {
                    return Err(bad(format!(
                        "header_encoding = {other:?}: use \"binary\" or \"json\""
                    )))
                }
            };
        }
        if let Some(v) = file.version {
            c.version = v;
        }
        if let Some(v) = &file.route_refresh_interval {
            c.route_refresh_interval = parse_duration("route_refresh_interval", v)?;
        }
        if let Some(v) = &file.heartbeat_interval {
            c.heartbeat_interval = parse_duration("heartbeat_interval", v)?;
        }
        if let Some(v) = &file.client_ip {
            c.client_ip = Some(
                v.parse()
                    .map_err(|_| bad(format!("client_ip = {v:?} is not an IP address")))?,
            );
        }
        c.instance_name = file.instance_name;
        c.namespace = file.namespace;
        if let Some(v) = file.max_topics {
            c.max_topics = v;
        }
        if let Some(v) = file.vip_channel {
            c.vip_channel = v;
        }
        if file.trace_topic.is_some() {
            c.trace_topic = file.trace_topic;
        }
        if let Some(v) = &file.compress_type {
            c.compress_type = crate::protocol::compression::CompressionType::from_name(v)
                .ok_or_else(|| {
                    bad(format!(
                        "compress_type = {v:?}: use \"zlib\", \"lz4\" or \"zstd\""
                    ))
                })?;
        }
        if let Some(v) = &file.queue_full {
            c.queue_full = match v.as_str() {
                "wait" => QueueFullPolicy::Wait,
                "fail" => QueueFullPolicy::Fail,
                other => {
                    return Err(bad(format!(
                        "queue_full = {other:?}: use \"wait\" or \"fail\""
                    )))
                }
            };
        }
        if let Some(defaults) = &file.core_defaults {
            if defaults.cpu.is_some() {
                return Err(bad(
                    "core_defaults.cpu: CPUs are chosen with [[core]] entries or `cores`".into(),
                ));
            }
            c.core = apply_core("core_defaults", defaults, &CoreConfig::default())?;
        }
        let mut per_cpu = BTreeMap::new();
        for (i, entry) in file.core.unwrap_or_default().iter().enumerate() {
            let cpu = entry.cpu.ok_or_else(|| {
                bad(format!(
                    "core[{i}].cpu is missing: every [[core]] names its CPU"
                ))
            })?;
            if per_cpu.contains_key(&cpu) {
                return Err(bad(format!("core[{i}].cpu = {cpu} appears twice")));
            }
            per_cpu.insert(cpu, apply_core(&format!("core[{i}]"), entry, &c.core)?);
        }
        c.cores = match file.cores {
            Some(CoresValue::Count(n)) => CoreSelection::Count(n),
            Some(CoresValue::List(list)) => CoreSelection::List(list),
            None if !per_cpu.is_empty() => CoreSelection::List(per_cpu.keys().copied().collect()),
            None => CoreSelection::All,
        };
        c.per_cpu = per_cpu;
        c.validate_values()?;
        Ok(c)
    }
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
producer_group = "orders"
namesrv = "10.0.0.1:9876;10.0.0.2:9876"
send_timeout = "2s"
attempt_timeout = "500ms"
compress_over = "8KiB"
header_encoding = "json"

[core_defaults]
max_inflight = 1000
io_memory = "2MiB"
spin_before_park = "0us"

[[core]]
cpu = 0
auto_batch = true
linger = "100us"
batch_max_messages = 32

[[core]]
cpu = 1
max_inflight = 10
connections_per_broker = 3
"#;

    #[test]
    fn full_file() {
        let c = ProducerConfig::from_toml_str(FULL).unwrap();
        assert_eq!(c.producer_group, "orders");
        assert_eq!(c.namesrv_addrs.len(), 2);
        assert_eq!(c.send_timeout, Duration::from_secs(2));
        assert_eq!(c.attempt_timeout, Duration::from_millis(500));
        assert_eq!(c.compress_over, 8192);
        assert_eq!(c.header_encoding, HeaderEncoding::Json);
        assert_eq!(c.cores, CoreSelection::List(vec![0, 1]));
        let core0 = c.core_for(0);
        assert_eq!(core0.max_inflight, 1000);
        assert_eq!(core0.io_memory, 2 << 20);
        let batch = core0.auto_batch.unwrap();
        assert_eq!(batch.linger, Duration::from_micros(100));
        assert_eq!(batch.max_messages, 32);
        assert_eq!(c.core_for(1).max_inflight, 10);
        assert_eq!(c.core_for(1).connections_per_broker, 3);
        assert_eq!(c.core_for(0).connections_per_broker, 1);
        assert!(c.core_for(1).auto_batch.is_none());
        assert_eq!(c.core_for(7).max_inflight, 1000);
    }

    #[test]
    fn errors_name_the_key() {
        let base = "producer_group = \"g\"\nnamesrv = \"a:1\"\n";
        for (extra, key) in [
            ("bogus = 1", "bogus"),
            ("send_timeout = \"3 parsecs\"", "send_timeout"),
            ("compress_over = \"4 furlongs\"", "compress_over"),
            ("[core_defaults]\nmax_inflight = 0", "max_inflight"),
            ("[core_defaults]\nio_memory = 1024", "io_memory"),
            ("[[core]]\nmax_inflight = 3", "cpu"),
            ("[[core]]\ncpu = 0\n[[core]]\ncpu = 0", "twice"),
            ("[[core]]\ncpu = 0\nlinger = \"1ms\"", "auto_batch"),
            ("[[core]]\ncpu = 0\nwhatever = 1", "whatever"),
            ("header_encoding = \"xml\"", "header_encoding"),
            ("queue_full = \"maybe\"", "queue_full"),
        ] {
            let err = ProducerConfig::from_toml_str(&format!("{base}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{extra:?} gave {err}");
        }
        // Required settings may come from the program; `validate` (and `build`) ask for them.
        let partial = ProducerConfig::from_toml_str("namesrv = \"a:1\"").unwrap();
        assert!(partial
            .validate()
            .unwrap_err()
            .to_string()
            .contains("producer_group"));
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("k", "250us").unwrap(),
            Duration::from_micros(250)
        );
        assert_eq!(
            parse_duration("k", "250µs").unwrap(),
            Duration::from_micros(250)
        );
        assert_eq!(
            parse_duration("k", "1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("k", "2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("k", "ms").is_err());
        assert!(parse_duration("k", "5 fortnights").is_err());
    }

    #[test]
    fn values_beyond_range_are_refused_naming_the_key() {
        let base = "producer_group = \"g\"\nnamesrv = \"a:1\"\n";
        for (extra, key) in [
            (
                "send_timeout = \"99999999999999999999999h\"",
                "send_timeout",
            ),
            (
                "attempt_timeout = \"18446744073709551616s\"",
                "attempt_timeout",
            ),
            (
                "max_message_size = \"18446744073709551615GiB\"",
                "max_message_size",
            ),
            ("[core_defaults]\nio_memory = \"17179869184g\"", "io_memory"),
        ] {
            let err = ProducerConfig::from_toml_str(&format!("{base}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{extra:?} gave {err}");
        }
    }

    use proptest::prelude::*;

    proptest::proptest! {
        /// Any number with any unit, in any duration or size key, is a value or an
        /// `InvalidConfig`: never a panic.
        #[test]
        fn extreme_values_never_panic(
            number in proptest::prop_oneof![
                proptest::num::u64::ANY.prop_map(|n| n.to_string()),
                "[0-9]{1,40}(\\.[0-9]{0,20})?",
            ],
            duration_unit in proptest::sample::select(vec!["ns", "us", "ms", "s", "m", "h"]),
            size_unit in proptest::sample::select(vec!["", "b", "k", "KiB", "MiB", "GiB"]),
            duration_key in proptest::sample::select(vec![
                "send_timeout", "attempt_timeout", "route_refresh_interval", "heartbeat_interval",
            ]),
            core_duration_key in proptest::sample::select(vec!["spin_before_park", "linger"]),
            size_key in proptest::sample::select(vec!["compress_over", "max_message_size"]),
        ) {
            let base = "producer_group = \"g\"\nnamesrv = \"a:1\"\n";
            for text in [
                format!("{base}{duration_key} = \"{number}{duration_unit}\""),
                format!("{base}{size_key} = \"{number}{size_unit}\""),
                format!(
                    "{base}[core_defaults]\nauto_batch = true\n{core_duration_key} = \"{number}{duration_unit}\""
                ),
                format!("{base}[core_defaults]\nio_memory = \"{number}{size_unit}\""),
            ] {
                if let Err(e) = ProducerConfig::from_toml_str(&text) {
                    prop_assert!(matches!(e, Error::InvalidConfig { .. }), "{text}: {e}");
                }
            }
        }
    }
}
