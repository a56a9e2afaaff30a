//! Engine costs: queue selection, the inbox hand-off, and end-to-end sends against the in-process
//! null broker (producer on CPU 0, sink on the last CPU). Baseline: the previous run.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use null_broker::NullBroker;
use rocketmq_tpc::internals::QueueSelector;
use rocketmq_tpc::protocol::route_data;
use rocketmq_tpc::{AutoBatch, CoreSelection, LocalProducer, Message, Producer, ProducerConfig};

fn selection(c: &mut Criterion) {
    let json = br#"{"queueDatas":[{"brokerName":"a","readQueueNums":8,"writeQueueNums":8,"perm":6},{"brokerName":"b","readQueueNums":8,"writeQueueNums":8,"perm":6}],"brokerDatas":[{"brokerName":"a","brokerAddrs":{"0":"x:1"}},{"brokerName":"b","brokerAddrs":{"0":"y:1"}}]}"#;
    let route = rocketmq_tpc::route::publish_queues::from_route(route_data::parse(json).unwrap());
    let mut selector = QueueSelector::new(7);
    let mut g = c.benchmark_group("queue_select");
    g.bench_function("round_robin", |b| {
        b.iter(|| black_box(selector.select("T", &route, None).map(|q| q.queue_id)))
    });
    g.bench_function("avoid_broker", |b| {
        b.iter(|| black_box(selector.select("T", &route, Some("a")).map(|q| q.queue_id)))
    });
    g.finish();
}

/// A send hook that does nothing: what a hook's mere presence costs per attempt.
struct NoopHook;

impl rocketmq_tpc::SendHook for NoopHook {}

/// What a bench producer has set beside the defaults.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Nothing: the baseline of every other variant.
    Plain,
    AutoBatch,
    NoopSendHook,
    /// Metrics published through the `metrics` facade every 100 ms (10× loadgen's rate), with
    /// no recorder installed: what the feature itself costs the send path.
    #[cfg(feature = "metrics")]
    MetricsPublished,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "local_async",
            Variant::AutoBatch => "local_async_autobatch",
            Variant::NoopSendHook => "local_async_noop_send_hook",
            #[cfg(feature = "metrics")]
            Variant::MetricsPublished => "local_async_metrics_published",
        }
    }
}

fn producer_with(namesrv: &str, variant: Variant) -> Producer {
    let mut config = ProducerConfig {
        producer_group: "bench".into(),
        namesrv_addrs: vec![namesrv.to_owned()],
        cores: CoreSelection::List(vec![0]),
        ..Default::default()
    };
    if variant == Variant::AutoBatch {
        config.core.auto_batch = Some(AutoBatch::default());
    }
    let mut builder = Producer::builder().config(config);
    if variant == Variant::NoopSendHook {
        builder = builder.send_hook(std::sync::Arc::new(NoopHook));
    }
    #[cfg(feature = "metrics")]
    if variant == Variant::MetricsPublished {
        builder = builder.publish_metrics(Duration::from_millis(100));
    }
    builder
        .on_delivery(|_, result| {
            result.expect("a reported send");
        })
        .build()
        .unwrap()
}

/// `iters` sends on core 0 through `LocalProducer::send`, 256 futures at a time.
fn local_futures(p: &Producer, body: &bytes::Bytes, iters: u64) -> Duration {
    let body = body.clone();
    p.run_on_core(0, move |local: LocalProducer| async move {
        let started = Instant::now();
        let window = 256u64.min(iters.max(1));
        let mut tasks = Vec::new();
        for w in 0..window {
            let (local, body) = (local.clone(), body.clone());
            let share = iters / window + u64::from(w < iters % window);
            tasks.push(glommio::spawn_local(async move {
                for _ in 0..share {
                    local
                        .send(Message::new("Bench", body.clone()))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        started.elapsed()
    })
    .unwrap()
    .wait()
    .unwrap()
}

/// `iters` sends on core 0 through `LocalProducer::send_reported` (the fast path), up to 256
/// outstanding, refilled from the delivery handler.
fn local_reported(p: &Producer, body: &bytes::Bytes, iters: u64) -> Duration {
    use std::cell::Cell;
    use std::rc::Rc;
    let body = body.clone();
    p.run_on_core(0, move |local: LocalProducer| async move {
        let started = Instant::now();
        let left = Rc::new(Cell::new(iters));
        let outstanding = Rc::new(Cell::new(0u64));
        let waker: Rc<Cell<Option<std::task::Waker>>> = Rc::default();
        let fill = {
            let (local, left, outstanding) = (local.clone(), left.clone(), outstanding.clone());
            Rc::new(move || {
                while outstanding.get() < 256 && left.get() > 0 {
                    match local.send_reported(Message::new("Bench", body.clone()), 0) {
                        Ok(()) => {
                            left.set(left.get() - 1);
                            outstanding.set(outstanding.get() + 1);
                        }
                        Err(rocketmq_tpc::Error::QueueFull { .. }) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        };
        let handler_fill = fill.clone();
        let (done_outstanding, done_waker) = (outstanding.clone(), waker.clone());
        local.set_delivery_handler(move |_, result| {
            result.expect("a reported send");
            done_outstanding.set(done_outstanding.get() - 1);
            handler_fill();
            if done_outstanding.get() == 0 {
                if let Some(w) = done_waker.take() {
                    w.wake();
                }
            }
        });
        fill();
        futures_lite::future::poll_fn(|cx| {
            if outstanding.get() == 0 && left.get() == 0 {
                return std::task::Poll::Ready(());
            }
            waker.set(Some(cx.waker().clone()));
            std::task::Poll::Pending
        })
        .await;
        local.set_delivery_handler(|_, _| {});
        started.elapsed()
    })
    .unwrap()
    .wait()
    .unwrap()
}

fn end_to_end(c: &mut Criterion) {
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    let sink_cpu = cpus.last().map(|c| c.id).unwrap_or(0);
    let sink = NullBroker::start(sink_cpu, 8).unwrap();
    let body = bytes::Bytes::from(vec![b'x'; 128]);
    let mut g = c.benchmark_group("send_to_sink_128B");
    g.throughput(Throughput::Elements(1));
    // Every variant's baseline is `local_async` (no hook, no batching, no metrics).
    let variants = [
        Variant::Plain,
        Variant::AutoBatch,
        Variant::NoopSendHook,
        #[cfg(feature = "metrics")]
        Variant::MetricsPublished,
    ];
    for variant in variants {
        let p = producer_with(sink.addr(), variant);
        p.send(Message::new("Bench", "warm-up")).unwrap();
        g.bench_function(variant.name(), |b| {
            b.iter_custom(|iters| local_futures(&p, &body, iters))
        });
        if variant == Variant::Plain {
            // Baseline: `local_async` (the same sends through futures).
            g.bench_function("local_reported", |b| {
                b.iter_custom(|iters| local_reported(&p, &body, iters))
            });
            g.bench_function("app_thread_send_async", |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    let mut window = std::collections::VecDeque::new();
                    for _ in 0..iters {
                        if window.len() >= 256 {
                            let f: rocketmq_tpc::SendFuture<_> = window.pop_front().unwrap();
                            f.wait().unwrap();
                        }
                        window.push_back(p.send_async(Message::new("Bench", body.clone())));
                    }
                    for f in window {
                        f.wait().unwrap();
                    }
                    started.elapsed()
                })
            });
        }
        p.shutdown(Duration::from_secs(5));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = selection, end_to_end
}
criterion_main!(benches);
