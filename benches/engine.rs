//! Engine costs: queue selection, the inbox hand-off, and end-to-end sends against the in-process
//! null broker (producer on CPU 0, sink on the last CPU). Baseline: the previous run.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rocketmq_tpc::internals::QueueSelector;
use rocketmq_tpc::protocol::route_data;
use rocketmq_tpc::sink::NullBroker;
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

fn producer_with(namesrv: &str, auto_batch: bool, hook: bool) -> Producer {
    let mut config = ProducerConfig {
        producer_group: "bench".into(),
        namesrv_addrs: vec![namesrv.to_owned()],
        cores: CoreSelection::List(vec![0]),
        ..Default::default()
    };
    if auto_batch {
        config.core.auto_batch = Some(AutoBatch::default());
    }
    let mut builder = Producer::builder().config(config);
    if hook {
        builder = builder.send_hook(std::sync::Arc::new(NoopHook));
    }
    builder.build().unwrap()
}

fn end_to_end(c: &mut Criterion) {
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    let sink_cpu = cpus.last().map(|c| c.id).unwrap_or(0);
    let sink = NullBroker::start(sink_cpu, 8).unwrap();
    let body = bytes::Bytes::from(vec![b'x'; 128]);
    let mut g = c.benchmark_group("send_to_sink_128B");
    g.throughput(Throughput::Elements(1));
    // Baseline of `local_async_noop_send_hook`: `local_async` (no hook set).
    for (auto, hook) in [(false, false), (true, false), (false, true)] {
        let p = producer_with(sink.addr(), auto, hook);
        p.send(Message::new("Bench", "warm-up")).unwrap();
        let name = match (auto, hook) {
            (true, _) => "local_async_autobatch",
            (false, true) => "local_async_noop_send_hook",
            (false, false) => "local_async",
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
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
            })
        });
        if !auto && !hook {
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
