//! `loadgen`: throughput and latency of rocketmq-tpc against a real cluster, the local real
//! broker, or the in-process null broker.

mod cli;
mod cpu;
mod exporter;
mod report_svg;
mod target;
mod workers;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rocketmq_tpc::{
    CoreSelection, LocalProducer, Message, Producer, ProducerConfig, TransactionProducer,
};

use cli::{Args, Mode};
use target::Target;
use workers::{Live, Numbers, Outcome, Plan};

fn main() {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            let text = e.to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("loadgen: {}", line.trim_start_matches("error: "));
            std::process::exit(2);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match run(args) {
        Ok(code) => std::process::exit(code),
        Err(message) => {
            eprintln!("loadgen: {message}");
            std::process::exit(1);
        }
    }
}

fn available_cpus() -> Vec<usize> {
    glommio::CpuSet::online()
        .map(|set| set.into_iter().map(|l| l.cpu).collect())
        .unwrap_or_else(|_| vec![0])
}

fn run(args: Args) -> Result<i32, String> {
    let max_size = args.size_range.map_or(args.size, |r| r.1);
    let max_message_size = rocketmq_tpc::ProducerConfig::default().max_message_size;
    if args.size == 0 || max_size > max_message_size {
        return Err(format!(
            "--size {} must be between 1 and {} bytes",
            args.size, max_message_size
        ));
    }
    if args.inflight() == 0 {
        return Err("--inflight must be at least 1".into());
    }
    if args.keys_count.is_some() && args.mode != Mode::Ordered {
        return Err("--keys-count applies to --mode ordered only".into());
    }
    let keys_count = args.keys_count.unwrap_or(16);
    if keys_count == 0 {
        return Err("--keys-count must be at least 1".into());
    }
    if args.mode == Mode::Transaction && args.threads == Some(0) {
        return Err(
            "--mode transaction blocks in send_in_transaction, which cannot run on a producer core: give it --threads 1 or more"
                .into(),
        );
    }
    let mut cores = cli::parse_cores(&args.cores)?;
    let cpus = available_cpus();
    let target = if args.sink {
        let sink_cpu = *cpus.last().expect("at least one CPU");
        if let CoreSelection::Count(n) = cores {
            let others: Vec<usize> = cpus.iter().copied().filter(|c| *c != sink_cpu).collect();
            if others.len() >= n {
                cores = CoreSelection::List(others[..n].to_vec());
            }
        }
        Target::Sink(null_broker::NullBroker::start(sink_cpu, 8).map_err(|e| e.to_string())?)
    } else if let Some(addrs) = &args.namesrv {
        // Each address is checked by the producer's own config validation (`build()`).
        Target::Cluster(addrs.clone())
    } else {
        target::start_local()?
    };
    let core_count = match &cores {
        CoreSelection::Count(n) => *n,
        CoreSelection::List(l) => l.len(),
        CoreSelection::All => cpus.len(),
    };
    let threads = args.threads.unwrap_or(match args.mode {
        Mode::Sync | Mode::Transaction => 16,
        _ => 0,
    });
    let mut config = match &args.config {
        Some(path) => ProducerConfig::from_file(path).map_err(|e| e.to_string())?,
        None => ProducerConfig {
            producer_group: "loadgen".into(),
            send_timeout: Duration::from_millis(args.timeout_ms),
            ..Default::default()
        },
    };
    config.namesrv_addrs = target.namesrv().split(';').map(str::to_owned).collect();
    if config.producer_group.trim().is_empty() {
        config.producer_group = "loadgen".into();
    }
    if args.config.is_none() || args.cores != "1" {
        config.cores = cores;
    }
    if let Some(c) = args.compress_over {
        config.compress_over = c;
    }
    if let Some(kind) = args.compress_type {
        use rocketmq_tpc::CompressionType;
        config.compress_type = match kind {
            cli::CompressKind::Zlib => CompressionType::Zlib,
            cli::CompressKind::Lz4 => CompressionType::Lz4,
            cli::CompressKind::Zstd => CompressionType::Zstd,
        };
    }
    if args.vip {
        config.vip_channel = true;
    }
    if args.trace {
        config.trace_topic = Some("RMQ_SYS_TRACE_TOPIC".into());
    }
    let tls_wanted = args.tls
        || args.tls_ca.is_some()
        || args.tls_server_name.is_some()
        || args.tls_cert.is_some();
    if tls_wanted {
        let ca = args
            .tls_ca
            .clone()
            .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
        let mut tls = rocketmq_tpc::TlsOptions::trusting(ca);
        tls.server_name = args.tls_server_name.clone();
        tls.client_cert_file = args.tls_cert.clone();
        tls.client_key_file = args.tls_key.clone();
        config.tls = Some(tls);
    }
    if args.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    if args.mode == Mode::AutoBatch {
        config.core.auto_batch = Some(rocketmq_tpc::AutoBatch {
            linger: Duration::from_micros(args.linger_us),
            max_messages: args.batch,
            ..Default::default()
        });
    }
    // The core counts messages, the batch mode's window counts batches.
    let per_request = if args.mode == Mode::Batch {
        args.batch
    } else {
        1
    };
    config.core.max_inflight = config.core.max_inflight.max(
        args.inflight()
            .saturating_mul(threads.max(1))
            .saturating_mul(per_request),
    );
    let mut builder = Producer::builder().config(config);
    // The recorder goes in before the producer publishes to it.
    let prometheus = match &args.prometheus {
        Some(addr) => {
            let exporter = exporter::install(addr)?;
            builder = builder.publish_metrics(Duration::from_secs(1));
            Some(exporter)
        }
        None => None,
    };
    if let Some(every) = args.stats_interval {
        let started = Instant::now();
        builder = builder.on_stats(every, move |stats| {
            eprintln!("{}", stats_line(started.elapsed(), stats));
        });
    }
    if let (Some(access), Some(secret)) = (&args.access_key, &args.secret_key) {
        let mut creds = rocketmq_tpc::AclCredentials::new(access.clone(), secret.clone());
        creds.security_token = args.security_token.clone();
        builder = builder.acl(creds);
    }
    let producer = builder.build().map_err(|e| e.to_string())?;
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("loadgen_{}", std::process::id()));
    Message::new(topic.as_str(), "-")
        .validate(usize::MAX)
        .map_err(|e| e.to_string())?;
    // Warm-up: fetch the route before the clock starts. Nothing is written: the topic holds the
    // run's messages only (a new topic is created by the first of them, through TBW102).
    let queues = producer.fetch_publish_queues(&topic).map_err(|e| {
        format!(
            "cannot get the route of {topic} from {} ({}): {e}",
            target.namesrv(),
            target.name()
        )
    })?;
    let transactions = if args.mode == Mode::Transaction {
        let tx = TransactionProducer::new(producer.clone(), workers::CommitAll::default())
            .map_err(|e| e.to_string())?;
        Some(Arc::new(tx))
    } else {
        None
    };

    let duration = args.duration.unwrap_or(if args.messages.is_some() {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs(10)
    });
    let workers = if threads > 0 { threads } else { core_count };
    let started = Instant::now();
    let plan = Plan {
        mode: args.mode,
        topic: topic.into(),
        body: bytes::Bytes::from(args.body.make(max_size)),
        size_range: args.size_range,
        tags: args.tags.clone(),
        keys: args.keys.clone(),
        keys_count,
        numbers: Arc::new(Numbers::Shared(Arc::default())),
        messages: args.messages,
        until: started + duration,
        inflight: args.inflight(),
        batch: if args.mode == Mode::Batch {
            args.batch
        } else {
            1
        },
        rate: args.rate.map(|r| r as f64),
        started,
    };
    let cpu_before = cpu::self_cpu_s();
    let producer_cpu_before = cpu::threads_cpu_s("rmq-tpc-");
    let broker_cpu_before = target.broker_cpu_s();
    let lives: Vec<Arc<Live>> = (0..workers).map(|_| Arc::new(Live::default())).collect();
    if let Some((handle, listener)) = prometheus {
        exporter::serve(handle, listener, lives.clone());
    }
    // Every worker draws from the run's one numbering; in ordered mode each draws the numbers
    // of its own keys, so one key's messages are sent by one worker, in order.
    let plan_of = |i: usize| {
        let mut plan = plan.clone();
        // A topic of its own per worker (not a clone): workers do not share its count.
        plan.topic = rocketmq_tpc::Topic::from(plan.topic.as_str());
        if args.mode == Mode::Ordered {
            plan.numbers = Arc::new(Numbers::own_keys(i as u64, workers as u64, keys_count));
        }
        plan
    };
    let mut handles: Vec<Box<dyn FnOnce() -> Result<Outcome, String>>> = Vec::new();
    if threads > 0 {
        for (i, live) in lives.iter().enumerate() {
            let (p, tx, plan, live) = (
                producer.clone(),
                transactions.clone(),
                plan_of(i),
                live.clone(),
            );
            let h = std::thread::spawn(move || workers::thread_worker(p, tx, plan, live));
            handles.push(Box::new(move || {
                h.join().map_err(|_| "a worker thread panicked".to_string())
            }));
        }
    } else {
        for (i, live) in lives.iter().enumerate() {
            let (plan, live) = (plan_of(i), live.clone());
            let reports = workers::uses_reports(&plan, args.futures);
            let h = producer
                .run_on_core(i, move |local: LocalProducer| async move {
                    if reports {
                        workers::reported_worker(local, plan, live).await
                    } else {
                        workers::core_worker(local, plan, live).await
                    }
                })
                .map_err(|e| e.to_string())?;
            handles.push(Box::new(move || h.wait().map_err(|e| e.to_string())));
        }
    }
    let goal = match args.messages {
        Some(m) => Goal::Messages(m),
        None => Goal::Time(duration),
    };
    let throughput = progress(&producer, &lives, started, goal);
    let mut outcomes = Vec::new();
    for h in handles {
        outcomes.push(h()?);
    }
    let elapsed = started.elapsed();
    let cpu_s = cpu::self_cpu_s() - cpu_before;
    let producer_cpu_s = cpu::threads_cpu_s("rmq-tpc-") - producer_cpu_before;
    let broker_cpu_s = target
        .broker_cpu_s()
        .zip(broker_cpu_before)
        .map(|(a, b)| a - b);
    let stats = producer.stats().ok();
    let mut extra = serde_json::Map::new();
    if args.mode == Mode::Ordered {
        extra.insert("keys_count".into(), keys_count.into());
        extra.insert("queues".into(), queues.len().into());
        let (used, busiest) = key_spread(keys_count, queues.len());
        extra.insert("queues_used".into(), used.into());
        extra.insert("keys_on_busiest_queue".into(), busiest.into());
    }
    if let Some(tx) = &transactions {
        let checks = tx
            .listener()
            .checks
            .load(std::sync::atomic::Ordering::Relaxed);
        extra.insert("transaction_checks".into(), checks.into());
    }
    drop(transactions);
    producer.shutdown(Duration::from_secs(5));
    let report = Report::new(
        &args,
        &target,
        core_count,
        threads,
        elapsed,
        outcomes,
        cpu_s,
        producer_cpu_s,
        broker_cpu_s,
        stats,
        extra,
    );
    report.print(args.json);
    if let Some(path) = &args.histogram {
        std::fs::write(path, report_svg::percentile_distribution(&report.latency))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.report {
        let title = format!("loadgen {} {} B", args.mode.name(), args.size);
        std::fs::write(
            path,
            report_svg::render(&throughput, &report.latency, &title),
        )
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(rate) = args.rate {
        if report.msgs_per_s < rate as f64 * 0.95 {
            eprintln!(
                "loadgen: WARNING: --rate {rate} was not reached (achieved {:.0} msg/s); latency includes the backlog",
                report.msgs_per_s
            );
        }
    }
    if report.acked == 0 && report.failed > 0 {
        // Nothing got through (a wrong ACL secret, a missing permission...): say why in one line.
        let reasons = report
            .fields
            .get("errors")
            .and_then(|e| e.as_object())
            .map(|e| {
                e.iter()
                    .map(|(k, v)| format!("{k} x{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        eprintln!("loadgen: every message failed: {reasons}");
        return Ok(4);
    }
    if report.sent != report.acked + report.failed {
        eprintln!(
            "loadgen: LEDGER MISMATCH: sent {} != acked {} + failed {}: messages without an outcome!",
            report.sent, report.acked, report.failed
        );
        return Ok(3);
    }
    Ok(0)
}

/// How the keys `0..keys` spread over `queues` publish queues (Java SelectMessageQueueByHash:
/// `abs(hashCode % queues)`): how many queues they use, and how many keys the busiest one
/// takes. With one request in flight per queue, the busiest queue bounds ordered throughput
/// at `keys / busiest` round trips' worth of messages per round trip.
fn key_spread(keys: u64, queues: usize) -> (usize, u64) {
    if queues == 0 {
        return (0, 0);
    }
    let n = i32::try_from(queues).unwrap_or(i32::MAX);
    let mut per_queue: BTreeMap<u32, u64> = BTreeMap::new();
    for k in 0..keys {
        let q = (rocketmq_tpc::java_string_hash(&k.to_string()) % n).unsigned_abs();
        *per_queue.entry(q).or_default() += 1;
    }
    let busiest = per_queue.values().copied().max().unwrap_or(0);
    (per_queue.len(), busiest)
}

/// What ends the run, for the progress bar.
#[derive(Clone, Copy)]
enum Goal {
    Messages(u64),
    Time(Duration),
}

/// `[#####-----]` for a fraction in 0..=1.
fn bar(fraction: f64) -> String {
    const WIDTH: usize = 24;
    let filled = ((fraction.clamp(0.0, 1.0)) * WIDTH as f64).round() as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(WIDTH - filled))
}

fn progress(
    producer: &Producer,
    lives: &[Arc<Live>],
    started: Instant,
    goal: Goal,
) -> Vec<(f64, f64)> {
    let mut samples = vec![(0.0, 0.0)];
    let tty = std::io::stderr().is_terminal();
    let total = |f: fn(&Live) -> u64| lives.iter().map(|l| f(l)).sum::<u64>();
    let mut last = (Instant::now(), 0u64);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let sent = total(|l| l.sent.load(std::sync::atomic::Ordering::Relaxed));
        let acked = total(|l| l.acked.load(std::sync::atomic::Ordering::Relaxed));
        let failed = total(|l| l.failed.load(std::sync::atomic::Ordering::Relaxed));
        let done = sent == acked + failed
            && producer.stats().map(|s| s.in_flight() == 0).unwrap_or(true)
            && lives_finished(lives, sent);
        if last.0.elapsed() >= Duration::from_secs(1) || done {
            let rate = (acked + failed - last.1) as f64 / last.0.elapsed().as_secs_f64();
            let p99 = producer
                .stats()
                .map(|s| s.latency_us().percentile_us(99.0))
                .unwrap_or(0);
            let line = format!(
                "[{:6.1}s] acked {acked} failed {failed} in flight {} | {rate:.0} msg/s | p99 {p99} µs",
                started.elapsed().as_secs_f64(),
                sent - acked - failed
            );
            if tty {
                let fraction = match goal {
                    Goal::Messages(m) => (acked + failed) as f64 / m.max(1) as f64,
                    Goal::Time(d) => started.elapsed().as_secs_f64() / d.as_secs_f64(),
                };
                eprint!("\r{} {line}\x1b[K", bar(fraction));
            } else {
                eprintln!("{line}");
            }
            last = (Instant::now(), acked + failed);
            samples.push((started.elapsed().as_secs_f64(), rate));
        }
        if done {
            if tty {
                eprintln!();
            }
            return samples;
        }
    }
}

/// Workers are done when nothing is outstanding and the count stopped moving for a moment.
fn lives_finished(lives: &[Arc<Live>], sent: u64) -> bool {
    std::thread::sleep(Duration::from_millis(20));
    let again: u64 = lives
        .iter()
        .map(|l| l.sent.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    again == sent
}

struct Report {
    fields: serde_json::Map<String, serde_json::Value>,
    latency: hdrhistogram::Histogram<u64>,
    sent: u64,
    acked: u64,
    failed: u64,
    msgs_per_s: f64,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn new(
        args: &Args,
        target: &Target,
        cores: usize,
        threads: usize,
        elapsed: Duration,
        outcomes: Vec<Outcome>,
        cpu_s: f64,
        producer_cpu_s: f64,
        broker_cpu_s: Option<f64>,
        stats: Option<rocketmq_tpc::ProducerStats>,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Report {
        let mut latency = workers::new_histogram();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let (mut sent, mut acked, mut failed) = (0, 0, 0);
        for o in outcomes {
            sent += o.sent;
            acked += o.acked;
            failed += o.failed;
            let _ = latency.add(&o.latency_us);
            for (k, v) in o.errors {
                *errors.entry(k).or_insert(0) += v;
            }
        }
        let secs = elapsed.as_secs_f64();
        let msgs_per_s = (acked + failed) as f64 / secs;
        let mb_per_s = acked as f64 * args.size as f64 / secs / 1_000_000.0;
        let per_msg = |cpu: f64| {
            if acked > 0 {
                cpu * 1e6 / acked as f64
            } else {
                0.0
            }
        };
        let q = |p: f64| latency.value_at_quantile(p);
        let mut f = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            f.insert(k.to_owned(), v);
        };
        put("mode", args.mode.name().into());
        put("target", target.name().into());
        put("size", args.size.into());
        put("body", format!("{:?}", args.body).to_lowercase().into());
        put("cores", cores.into());
        put("threads", threads.into());
        put("inflight", args.inflight().into());
        if matches!(args.mode, Mode::Batch | Mode::AutoBatch) {
            put("batch", args.batch.into());
        }
        for (k, v) in extra {
            put(&k, v);
        }
        put("sent", sent.into());
        put("acked", acked.into());
        put("failed", failed.into());
        put("elapsed_s", round(secs, 3).into());
        put("msgs_per_s", round(msgs_per_s, 0).into());
        put("mb_per_s", round(mb_per_s, 2).into());
        put("p50_us", q(0.5).into());
        put("p90_us", q(0.9).into());
        put("p99_us", q(0.99).into());
        put("p999_us", q(0.999).into());
        put("max_us", latency.max().into());
        put("cpu_s", round(cpu_s, 3).into());
        put("cpu_us_per_msg", round(per_msg(cpu_s), 3).into());
        put("producer_cpu_s", round(producer_cpu_s, 3).into());
        put(
            "producer_cpu_us_per_msg",
            round(per_msg(producer_cpu_s), 3).into(),
        );
        if let Some(b) = broker_cpu_s {
            put("broker_cpu_s", round(b, 3).into());
            put("broker_cpu_us_per_msg", round(per_msg(b), 3).into());
        }
        if let Some(s) = &stats {
            put("frames_per_write", round(s.frames_per_write(), 2).into());
            // What went on the wire (after compression), for comparing `--body` kinds.
            put("wire_bytes", s.bytes_written().into());
            put("retries", s.retries().into());
        }
        if let Some(r) = args.rate {
            put("rate", r.into());
        }
        put(
            "errors",
            serde_json::Value::Object(errors.into_iter().map(|(k, v)| (k, v.into())).collect()),
        );
        put(
            "latency_note",
            (match args.mode {
                Mode::Oneway => "oneway: acked = written to the socket; latency = until written",
                Mode::Batch => "batch: latency is per batch request, from submission to outcome",
                Mode::Ordered => {
                    "per message, from submission (or intended send time with --rate) to outcome; includes the wait for the previous request to the same queue (one in flight per queue)"
                }
                Mode::Transaction => {
                    "per transaction: half message stored, local transaction (commit), END_TRANSACTION written (oneway)"
                }
                _ => "per message, from submission (or intended send time with --rate) to outcome",
            })
            .into(),
        );
        Report {
            fields: f,
            latency,
            sent,
            acked,
            failed,
            msgs_per_s,
        }
    }

    fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::Value::Object(self.fields.clone()));
            return;
        }
        println!("loadgen summary");
        for (k, v) in &self.fields {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("  {k:<26} {v}");
        }
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

/// One `--stats-interval` line: the producer's totals and latency as JSON.
fn stats_line(elapsed: Duration, stats: &rocketmq_tpc::ProducerStats) -> String {
    let latency = stats.latency_us();
    let per_core: Vec<serde_json::Value> = stats
        .cores
        .iter()
        .map(|c| {
            serde_json::json!({
                "core": c.core,
                "acked": c.acked,
                "failed": c.failed,
                "in_flight": c.in_flight,
                "connections": c.connections,
            })
        })
        .collect();
    serde_json::json!({
        "elapsed_s": elapsed.as_secs_f64(),
        "client_id": stats.client_id,
        "started": stats.started(),
        "acked": stats.acked(),
        "failed": stats.failed(),
        "retries": stats.retries(),
        "refused": stats.refused(),
        "in_flight": stats.in_flight(),
        "p50_us": latency.percentile_us(50.0),
        "p99_us": latency.percentile_us(99.0),
        "cores": per_core,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn keys_spread_over_queues_like_select_message_queue_by_hash() {
        // "0".."9" hash to 48..57 and "10".."15" to 1567..1572: over four queues, queue 0
        // takes "0", "4", "8", "11" and "15".
        assert_eq!(super::key_spread(10, 4), (4, 3));
        assert_eq!(super::key_spread(16, 4), (4, 5));
        assert_eq!(super::key_spread(1, 8), (1, 1));
        assert_eq!(super::key_spread(16, 0), (0, 0));
    }

    #[test]
    fn progress_bar() {
        assert_eq!(bar(0.0), format!("[{}]", "-".repeat(24)));
        assert_eq!(bar(0.5), format!("[{}{}]", "#".repeat(12), "-".repeat(12)));
        assert_eq!(bar(7.0), format!("[{}]", "#".repeat(24)));
    }
}
