//! `--prometheus HOST:PORT`: the producer's metrics (published through the `metrics` facade)
//! and loadgen's own counters and rate, in Prometheus text format, while the run lasts.
//!
//! ```text
//!  producer ── publish_metrics(1 s) ──► metrics facade ──► Prometheus recorder
//!  GET /metrics ──► loadgen_* set from the workers' live counters ──► render() ──► response
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::workers::Live;

/// Histogram buckets for `*_seconds` metrics: 10 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the Prometheus recorder (before the producer is built, so its metrics land there)
/// and binds `addr`.
pub fn install(addr: &str) -> Result<(PrometheusHandle, TcpListener), String> {
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("--prometheus {addr}: cannot listen: {e}"))?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .map_err(|e| format!("--prometheus: {e}"))?
        .install_recorder()
        .map_err(|e| format!("--prometheus: {e}"))?;
    Ok((handle, listener))
}

/// Serves scrapes on `listener` from a thread of its own until the process ends.
pub fn serve(handle: PrometheusHandle, listener: TcpListener, lives: Vec<Arc<Live>>) {
    let rate = Mutex::new((Instant::now(), 0u64));
    describe();
    std::thread::Builder::new()
        .name("loadgen-prometheus".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                publish_loadgen(&lives, &rate);
                handle.run_upkeep();
                if let Err(e) = answer(stream, &handle.render()) {
                    eprintln!("loadgen: a metrics scrape failed: {e}");
                }
            }
        })
        .expect("start the metrics thread");
}

fn describe() {
    metrics::describe_counter!(
        "loadgen_messages_sent_total",
        "messages loadgen handed over"
    );
    metrics::describe_counter!("loadgen_messages_acked_total", "messages that got a result");
    metrics::describe_counter!(
        "loadgen_messages_failed_total",
        "messages that got an error"
    );
    metrics::describe_gauge!(
        "loadgen_acked_per_second",
        "acked messages per second since the previous scrape"
    );
}

/// Sets loadgen's own series from the workers' live counters.
fn publish_loadgen(lives: &[Arc<Live>], rate: &Mutex<(Instant, u64)>) {
    let sum = |f: fn(&Live) -> u64| lives.iter().map(|l| f(l)).sum::<u64>();
    let acked = sum(|l| l.acked.load(Ordering::Relaxed));
    metrics::counter!("loadgen_messages_sent_total")
        .absolute(sum(|l| l.sent.load(Ordering::Relaxed)));
    metrics::counter!("loadgen_messages_acked_total").absolute(acked);
    metrics::counter!("loadgen_messages_failed_total")
        .absolute(sum(|l| l.failed.load(Ordering::Relaxed)));
    let mut last = rate.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let secs = now.duration_since(last.0).as_secs_f64();
    if secs > 0.0 {
        metrics::gauge!("loadgen_acked_per_second").set(acked.saturating_sub(last.1) as f64 / secs);
    }
    *last = (now, acked);
}

/// Reads the request head (bounded, with a timeout) and answers with `body`.
fn answer(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let found = head.starts_with(b"GET /metrics ") || head.starts_with(b"GET / ");
    let (status, body) = if found {
        ("200 OK", body)
    } else {
        ("404 Not Found", "only GET /metrics is served here\n")
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
