//! Tests of the config file format.

use std::time::Duration;

use super::*;
use crate::protocol::HeaderEncoding;

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

/// Every field of the config types has a key: a field added to `ProducerConfig` or
/// `CoreConfig` without one breaks this struct literal (no `..Default::default()` on purpose)
/// or its comparison with the file.
#[test]
fn every_field_is_settable_from_the_file() {
    use crate::config::{AutoBatch, QueueFullPolicy};
    use crate::fault_table::FaultTable;
    use crate::protocol::compression::CompressionType;
    use crate::protocol::LanguageCode;
    use crate::tls::TlsOptions;

    let text = r#"
producer_group = "orders"
namesrv = ["10.0.0.1:9876", "10.0.0.2:9876"]
send_timeout = "5s"
attempt_timeout = "2s"
retries_when_send_failed = 4
retries_when_send_async_failed = 5
retry_another_broker_when_not_store_ok = true
compress_over = "1KiB"
compress_level = 7
compress_type = "zstd"
max_message_size = "2MiB"
header_encoding = "json"
language = "RUST"
version = 500
create_topic_key = "AUTO_CREATE"
default_topic_queue_nums = 8
route_refresh_interval = "10s"
heartbeat_interval = "20s"
client_ip = "10.1.2.3"
instance_name = "i-1"
send_latency_fault_enable = true
cores = [0]
queue_full = "fail"
trace_topic = "RMQ_SYS_TRACE_TOPIC"
vip_channel = true
max_topics = 100
namespace = "ns1"

[fault_table]
latency_max = ["10ms", "1s"]
not_available = ["0s", "5s"]
isolation_latency = "3s"

[tls]
ca_file = "/etc/ca.pem"
server_name = "broker.local"
client_cert_file = "/etc/client.pem"
client_key_file = "/etc/client.key"

[core_defaults]
io_memory = "512KiB"
ring_depth = 64
inbox_capacity = 100
max_inflight = 200
max_inflight_per_connection = 50
max_buffered_bytes = "8MiB"
spin_before_park = "10us"
connections_per_broker = 2
auto_batch = { linger = "1ms", max_messages = 16, max_bytes = "64KiB" }

[[core]]
cpu = 0
auto_batch = false
"#;
    let core = CoreConfig {
        io_memory: 512 << 10,
        ring_depth: 64,
        inbox_capacity: 100,
        max_inflight: 200,
        max_inflight_per_connection: 50,
        max_buffered_bytes: 8 << 20,
        spin_before_park: Duration::from_micros(10),
        auto_batch: Some(AutoBatch {
            linger: Duration::from_millis(1),
            max_messages: 16,
            max_bytes: 64 << 10,
        }),
        connections_per_broker: 2,
    };
    let mut tls =
        TlsOptions::trusting("/etc/ca.pem").with_client_cert("/etc/client.pem", "/etc/client.key");
    tls.server_name = Some("broker.local".into());
    let expected = ProducerConfig {
        producer_group: "orders".into(),
        namesrv_addrs: vec!["10.0.0.1:9876".into(), "10.0.0.2:9876".into()],
        send_timeout: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(2),
        retries_when_send_failed: 4,
        retries_when_send_async_failed: 5,
        retry_another_broker_when_not_store_ok: true,
        compress_over: 1024,
        compress_level: 7,
        compress_type: CompressionType::Zstd,
        max_message_size: 2 << 20,
        header_encoding: HeaderEncoding::Json,
        language: LanguageCode::RUST,
        version: 500,
        create_topic_key: "AUTO_CREATE".into(),
        default_topic_queue_nums: 8,
        route_refresh_interval: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(20),
        client_ip: Some("10.1.2.3".parse().unwrap()),
        instance_name: Some("i-1".into()),
        send_latency_fault_enable: true,
        fault_table: FaultTable {
            latency_max: vec![Duration::from_millis(10), Duration::from_secs(1)],
            not_available: vec![Duration::ZERO, Duration::from_secs(5)],
            isolation_latency: Duration::from_secs(3),
        },
        cores: CoreSelection::List(vec![0]),
        core: core.clone(),
        per_cpu: [(
            0,
            CoreConfig {
                auto_batch: None,
                ..core
            },
        )]
        .into(),
        queue_full: QueueFullPolicy::Fail,
        tls: Some(tls),
        trace_topic: Some("RMQ_SYS_TRACE_TOPIC".into()),
        vip_channel: true,
        max_topics: 100,
        namespace: Some("ns1".into()),
    };
    assert_eq!(ProducerConfig::from_toml_str(text).unwrap(), expected);
}

#[test]
fn enum_names_and_nested_errors_name_the_key() {
    let base = "producer_group = \"g\"\nnamesrv = \"a:1\"\n";
    for (extra, key) in [
        ("language = \"KLINGON\"", "language"),
        ("compress_type = \"rar\"", "compress_type"),
        ("client_ip = \"nowhere\"", "client_ip"),
        ("cores = \"some\"", "cores"),
        (
            "[fault_table]\nlatency_max = [\"1 week\"]",
            "fault_table.latency_max",
        ),
        ("[fault_table]\nlatency_max = [\"1s\"]", "fault_table"),
        ("[tls]\nserver_name = \"x\"", "ca_file"),
        ("[core_defaults]\nauto_batch = { lingr = \"1ms\" }", "lingr"),
        ("[core_defaults]\nauto_batch = 3", "auto_batch"),
        ("[[core]]\ncpu = -1", "cpu"),
        ("[core_defaults]\ncpu = 1", "core_defaults.cpu"),
    ] {
        let err = ProducerConfig::from_toml_str(&format!("{base}{extra}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{extra:?} gave {err}");
    }
}
