//! Shared setup of the integration tests: the real local RocketMQ, read-back of stored messages,
//! and a scriptable fake broker for fault injection.
//!
//! The real servers come from `NAMESRV_ADDR` / `BROKER_ADDRS` when set, otherwise from
//! `tools/rocketmq-local start` (installing on first use), owned by this test process.
#![allow(dead_code)]

pub mod fake_broker;
pub mod java_servers;
pub mod ledger;
pub mod parity;
pub mod proxy;
pub mod read_back;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rocketmq_tpc::{Message, Producer, ProducerConfig};

/// Addresses of a running NameServer and its brokers.
#[derive(Debug, Clone)]
pub struct LocalRocketmq {
    pub namesrv: String,
    pub brokers: Vec<String>,
    /// The script's folder (PIDs, logs, stores) when this process started the servers.
    pub dir: Option<String>,
}

impl LocalRocketmq {
    /// `kill -9` broker `i` (its store stays).
    pub fn kill_broker(&self, i: usize) {
        self.script(&[
            "kill-broker",
            self.dir.as_deref().expect("own servers"),
            &i.to_string(),
        ]);
    }

    /// Starts broker `i` again on its store and waits until it listens.
    pub fn start_broker(&self, i: usize) {
        self.script(&[
            "start-broker",
            self.dir.as_deref().expect("own servers"),
            &i.to_string(),
        ]);
    }

    /// `kill -9` the NameServer.
    pub fn kill_namesrv(&self) {
        self.script(&["kill-namesrv", self.dir.as_deref().expect("own servers")]);
    }

    /// SIGSTOP broker `i`: its connections stay open but nothing is answered.
    pub fn pause_broker(&self, i: usize) {
        self.script(&[
            "pause-broker",
            self.dir.as_deref().expect("own servers"),
            &i.to_string(),
        ]);
    }

    /// SIGCONT broker `i`.
    pub fn resume_broker(&self, i: usize) {
        self.script(&[
            "resume-broker",
            self.dir.as_deref().expect("own servers"),
            &i.to_string(),
        ]);
    }

    fn script(&self, args: &[&str]) {
        let status = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/rocketmq-local"))
            .args(args)
            .status()
            .expect("run tools/rocketmq-local");
        assert!(status.success(), "tools/rocketmq-local {args:?} failed");
    }
}

/// Starts (once per test process) or finds the real NameServer + broker.
pub fn rocketmq() -> &'static LocalRocketmq {
    static CELL: OnceLock<LocalRocketmq> = OnceLock::new();
    CELL.get_or_init(|| {
        if let (Ok(namesrv), Ok(brokers)) =
            (std::env::var("NAMESRV_ADDR"), std::env::var("BROKER_ADDRS"))
        {
            return LocalRocketmq {
                namesrv,
                brokers: brokers.split(';').map(str::to_owned).collect(),
                dir: None,
            };
        }
        start_local(1)
    })
}

/// Starts a fresh NameServer with `brokers` brokers owned by this process.
pub fn start_local(brokers: usize) -> LocalRocketmq {
    start_local_with(brokers, "")
}

/// [`start_local`] with extra `broker.properties` lines.
pub fn start_local_with(brokers: usize, broker_extra: &str) -> LocalRocketmq {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/rocketmq-local");
    let out = Command::new("bash")
        .arg(script)
        .env("ROCKETMQ_LOCAL_BROKER_EXTRA", broker_extra)
        .args(["start", "--owner-pid", &std::process::id().to_string()])
        .args(["--brokers", &brokers.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run tools/rocketmq-local");
    assert!(
        out.status.success(),
        "tools/rocketmq-local start failed; the integration tests need the real broker"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("tools/rocketmq-local printed no {key}: {text}"))
            .to_owned()
    };
    LocalRocketmq {
        namesrv: value("NAMESRV_ADDR"),
        brokers: value("BROKER_ADDRS")
            .split(';')
            .map(str::to_owned)
            .collect(),
        dir: Some(value("ROCKETMQ_LOCAL_DIR")),
    }
}

/// A unique topic name for one test.
pub fn topic(test: &str) -> String {
    parity::unique_topic(test)
}

/// Varied messages: tags on some, keys on some, user properties (one non-ASCII) on some,
/// varied flags, bodies of `body_size` bytes.
pub fn varied_messages(topic: &str, n: usize, body_size: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            let body: Vec<u8> = (0..body_size)
                .map(|j| ((i * 31 + j * 7) % 251) as u8)
                .collect();
            let mut m = Message::new(topic, body).with_flag(i as i32 % 3);
            if i % 2 == 0 {
                m = m.with_tags(format!("tag{}", i % 5));
            }
            if i % 3 == 0 {
                m = m.with_keys([format!("k{i}"), "shared".to_owned()]);
            }
            if i % 4 == 0 {
                m = m
                    .with_property("order", i.to_string())
                    .with_property("ünï", "cödé");
            }
            m
        })
        .collect()
}

/// A configuration for the given NameServer with test-friendly limits.
pub fn config(namesrv: &str) -> ProducerConfig {
    let mut c = ProducerConfig {
        producer_group: "tpc_tests".into(),
        namesrv_addrs: namesrv.split(';').map(str::to_owned).collect(),
        cores: rocketmq_tpc::CoreSelection::Count(1),
        ..Default::default()
    };
    c.core.spin_before_park = Duration::ZERO;
    c
}

/// A producer with [`config`].
pub fn producer(namesrv: &str) -> Producer {
    Producer::builder()
        .config(config(namesrv))
        .build()
        .expect("producer starts")
}

/// Installs a tracing subscriber once (RUST_LOG controls it).
pub fn init_tracing() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}
