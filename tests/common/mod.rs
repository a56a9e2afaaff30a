//! Shared setup of the integration tests: the real local RocketMQ, read-back of stored messages,
//! and a scriptable fake broker for fault injection.
//!
//! The real servers come from `NAMESRV_ADDR` / `BROKER_ADDRS` when set, otherwise from
//! `tools/rocketmq-local start` (installing on first use), owned by this test process.
#![allow(dead_code)]

pub mod fake_broker;
pub mod frames;
pub mod java_consumer;
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

/// A JSON-like text body of 40 lines for message `i` (compresses like real payloads).
pub fn json_text(i: usize) -> String {
    (0..40)
        .map(|j| format!("{{\"order\":{i},\"line\":{j},\"ok\":true}}"))
        .collect()
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

/// Runs `f` on a helper thread and fails the test if it has not returned within `limit`
/// (a panic in `f` is the test's panic).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let helper = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match helper.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the helper ended without sending"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {limit:?}")
        }
    }
}

/// Waits for all `futures` at once (polled together on this thread, each woken on its own) and
/// returns their outcomes in order, each with its label. Fails the test, naming the labels, if
/// some have no outcome after `limit`, or if one ends with `CoreStopped` (the core lost its
/// outcome: no scenario using this makes a core stop).
pub fn wait_all<L: std::fmt::Debug, T>(
    what: &str,
    limit: Duration,
    futures: Vec<(L, rocketmq_tpc::SendFuture<T>)>,
) -> Vec<(L, Result<T, rocketmq_tpc::Error>)> {
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Wake, Waker};

    struct Woken {
        index: usize,
        ready: Arc<Mutex<Vec<usize>>>,
        thread: std::thread::Thread,
    }
    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref()
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.ready.lock().unwrap().push(self.index);
            self.thread.unpark();
        }
    }

    let deadline = std::time::Instant::now() + limit;
    let ready = Arc::new(Mutex::new((0..futures.len()).rev().collect::<Vec<_>>()));
    let (labels, mut pending): (Vec<L>, Vec<Option<rocketmq_tpc::SendFuture<T>>>) =
        futures.into_iter().map(|(l, f)| (l, Some(f))).unzip();
    let wakers: Vec<Waker> = (0..pending.len())
        .map(|index| {
            Waker::from(Arc::new(Woken {
                index,
                ready: ready.clone(),
                thread: std::thread::current(),
            }))
        })
        .collect();
    let mut outcomes: Vec<Option<Result<T, rocketmq_tpc::Error>>> =
        pending.iter().map(|_| None).collect();
    let mut left = pending.len();
    while left > 0 {
        let woken = std::mem::take(&mut *ready.lock().unwrap());
        for index in woken {
            let Some(future) = pending[index].as_mut() else {
                continue;
            };
            let mut cx = Context::from_waker(&wakers[index]);
            if let Poll::Ready(outcome) = std::pin::Pin::new(future).poll(&mut cx) {
                pending[index] = None;
                outcomes[index] = Some(outcome);
                left -= 1;
            }
        }
        if left == 0 {
            break;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            let missing: Vec<&L> = labels
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| o.is_none())
                .map(|(l, _)| l)
                .collect();
            panic!(
                "{what}: {} of {} sends have no outcome after {limit:?}: {:?}",
                missing.len(),
                labels.len(),
                &missing[..missing.len().min(20)]
            );
        }
        if ready.lock().unwrap().is_empty() {
            std::thread::park_timeout((deadline - now).min(Duration::from_millis(100)));
        }
    }
    let out: Vec<(L, Result<T, rocketmq_tpc::Error>)> = labels
        .into_iter()
        .zip(outcomes)
        .map(|(l, o)| (l, o.expect("every outcome is in")))
        .collect();
    let lost: Vec<String> = out
        .iter()
        .filter_map(|(l, o)| match o {
            Err(e @ rocketmq_tpc::Error::CoreStopped { .. }) => Some(format!("{l:?}: {e}")),
            _ => None,
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{what}: {} sends lost their outcome: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    out
}

/// `producer.send(message)` on a helper thread; fails the test if it has not returned within
/// `limit`.
pub fn send_within(
    producer: &Producer,
    message: Message,
    limit: Duration,
) -> Result<rocketmq_tpc::SendResult, rocketmq_tpc::Error> {
    let producer = producer.clone();
    let what = format!("send({:?})", String::from_utf8_lossy(&message.body));
    within(limit, &what, move || producer.send(message))
}

/// The retries counted by every core of `producer`.
pub fn retries(producer: &Producer) -> u64 {
    producer.stats().unwrap().retries()
}

/// [`wait_all`] for sends of messages: each labelled by its body (as text) when missing;
/// returns every message with its outcome, in order.
pub fn wait_all_sent(
    what: &str,
    limit: Duration,
    futures: Vec<(Message, rocketmq_tpc::SendFuture<rocketmq_tpc::SendResult>)>,
) -> Vec<ledger::Sent> {
    let (messages, futures): (Vec<Message>, Vec<_>) = futures.into_iter().unzip();
    let labelled = messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .zip(futures)
        .collect();
    let outcomes = wait_all(what, limit, labelled);
    messages
        .into_iter()
        .zip(outcomes.into_iter().map(|(_, outcome)| outcome))
        .collect()
}

/// This process's resident memory in bytes (`VmRSS`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// Runs `f` on core `core` of `producer` and waits for what it returns (or the core's error);
/// fails the test when the core does not take it or it has not finished within 60 s.
pub fn on_core<F, Fut, T>(producer: &Producer, core: usize, f: F) -> Result<T, rocketmq_tpc::Error>
where
    F: FnOnce(rocketmq_tpc::LocalProducer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    producer
        .run_on_core(core, f)
        .expect("the core takes the task")
        .wait_timeout(Duration::from_secs(60))
        .expect("the core task finished within 60 s")
}
