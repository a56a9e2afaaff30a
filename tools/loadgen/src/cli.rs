//! Command-line options.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// What kind of send each message uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Blocking sends from application threads (`--threads`).
    Sync,
    /// Pipelined sends (`--inflight` outstanding per worker).
    Async,
    /// Fire-and-forget: counted as acked once written to the socket.
    Oneway,
    /// Explicit batches of `--batch` messages (SEND_BATCH_MESSAGE); latency is per batch.
    Batch,
    /// Single async sends joined by the producer's automatic batching (`--batch` = max per batch).
    AutoBatch,
    /// Async sends in key order (Java SelectMessageQueueByHash): message n goes with key
    /// `n % --keys-count`. The producer keeps one request in flight per queue (per core) for
    /// ordered sends, which is what keeps each key's order, so throughput is bounded by
    /// queues × 1 / round trip however large --inflight is.
    Ordered,
    /// send_in_transaction from application threads (`--threads`): half message, a local
    /// transaction that commits, END_TRANSACTION (two requests per message, blocking).
    Transaction,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
            Mode::Oneway => "oneway",
            Mode::Batch => "batch",
            Mode::AutoBatch => "auto-batch",
            Mode::Ordered => "ordered",
            Mode::Transaction => "transaction",
        }
    }
}

/// Load generator for rocketmq-tpc.
///
/// With no --namesrv it starts a local real RocketMQ (tools/rocketmq-local, installed on first
/// use) and stops it at the end; --sink measures against the in-process null broker instead.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// NameServer address(es) of a real cluster, `host:port[;host:port]`.
    #[arg(long, conflicts_with = "sink")]
    pub namesrv: Option<String>,
    /// Use the in-process null broker (acks instantly, stores nothing) on the last CPU.
    #[arg(long)]
    pub sink: bool,
    /// Topic (default: a fresh `loadgen_<pid>` topic, auto-created through TBW102).
    #[arg(long)]
    pub topic: Option<String>,
    /// Send mode.
    #[arg(long, value_enum, default_value_t = Mode::Async)]
    pub mode: Mode,
    /// Body size in bytes.
    #[arg(long, default_value_t = 128, value_parser = parse_size)]
    pub size: usize,
    /// Body sizes spread evenly over MIN..MAX bytes (overrides --size), e.g. 100..4KiB.
    #[arg(long, value_parser = parse_size_range)]
    pub size_range: Option<(usize, usize)>,
    /// Stop after this many messages (default: run for --duration).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Run this many seconds (default 10 when --messages is not given).
    #[arg(long, value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Producer cores: a count (`2`) or a CPU list (`0,1`).
    #[arg(long, default_value = "1")]
    pub cores: String,
    /// Messages per batch (batch: exact size; auto-batch: the most per batch).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Auto-batch linger in microseconds (0 = batch only what is already waiting).
    #[arg(long, default_value_t = 0)]
    pub linger_us: u64,
    /// Sharding keys of --mode ordered: message n is sent with key `n % keys-count` [default: 16].
    #[arg(long)]
    pub keys_count: Option<u64>,
    /// Outstanding sends per worker, for async, oneway, ordered and auto-batch (batch: batches
    /// outstanding; sync and transaction send one at a time per thread) [default: 256;
    /// auto-batch: 16 batches of --batch, at least 256, so that batches fill instead of one
    /// batch waiting on the window; batch: 4,096 messages' worth of batches, 1 to 256].
    #[arg(long)]
    pub inflight: Option<usize>,
    /// On the cores, send through the future API (`LocalProducer::send`, one task per
    /// outstanding send) instead of delivery reports (`send_reported`, the fast path).
    #[arg(long)]
    pub futures: bool,
    /// Application threads submitting from outside the cores (sync and transaction default 16;
    /// the others default 0 = submit from the cores themselves with no hop).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Open-loop rate in messages/s over all workers (latency from the intended send time).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Tag set on every message.
    #[arg(long)]
    pub tags: Option<String>,
    /// Key set on every message (suffixed with the message number).
    #[arg(long)]
    pub keys: Option<String>,
    /// Compress bodies of at least this many bytes.
    #[arg(long, value_parser = parse_size)]
    pub compress_over: Option<usize>,
    /// Body content: `random` (seeded random bytes: incompressible, honest compression
    /// figures), `text` (JSON-like records: compresses like real payloads) or `x` (one byte
    /// repeated: compresses to almost nothing).
    #[arg(long, value_enum, default_value_t = BodyKind::Random)]
    pub body: BodyKind,
    /// Compression of bodies of at least `--compress-over` bytes: zlib (default), lz4, zstd.
    #[arg(long, value_enum)]
    pub compress_type: Option<CompressKind>,
    /// ACL access key (with `--secret-key`): every request is signed.
    #[arg(long, requires = "secret_key")]
    pub access_key: Option<String>,
    /// ACL secret key.
    #[arg(long, requires = "access_key")]
    pub secret_key: Option<String>,
    /// ACL security token, for accounts that use one.
    #[arg(long, requires = "access_key")]
    pub security_token: Option<String>,
    /// Send to the brokers' VIP channel (port − 2).
    #[arg(long)]
    pub vip: bool,
    /// Trace every send to RMQ_SYS_TRACE_TOPIC.
    #[arg(long)]
    pub trace: bool,
    /// TLS to the NameServers and brokers, trusting the system's CA bundle
    /// (/etc/ssl/certs/ca-certificates.crt) unless --tls-ca is given.
    #[arg(long)]
    pub tls: bool,
    /// TLS, trusting the CA certificates of this PEM file (implies --tls).
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// The name the servers' TLS certificates must carry (default: each address's host).
    #[arg(long)]
    pub tls_server_name: Option<String>,
    /// Client certificate chain (PEM) for servers that require one (mutual TLS); with --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Serve the producer's metrics and loadgen's own counters in Prometheus text format on
    /// HOST:PORT (`GET /metrics`) while the run lasts.
    #[arg(long, value_name = "HOST:PORT")]
    pub prometheus: Option<String>,
    /// Print the producer's stats as one JSON line on stderr every this many seconds.
    #[arg(long, value_parser = parse_secs, value_name = "SECONDS")]
    pub stats_interval: Option<Duration>,
    /// Producer configuration file (TOML, see `ProducerConfig::from_file`); flags override it.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Write the latency HdrHistogram (percentile distribution, µs) to this file.
    #[arg(long)]
    pub histogram: Option<std::path::PathBuf>,
    /// Write an SVG report (throughput over time, latency percentiles) to this file.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// Send timeout per message in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// The messages explicit batches keep outstanding per worker by default.
const BATCH_WINDOW_MESSAGES: usize = 4096;

impl Args {
    /// Outstanding sends per worker: `--inflight`, or the mode's default.
    pub fn inflight(&self) -> usize {
        self.inflight.unwrap_or(match self.mode {
            Mode::AutoBatch => self.batch.saturating_mul(16).max(256),
            // More batches than this only queue in the socket: batches of 64 ran 4.7–5.3M
            // msg/s at 64 outstanding against 3.8–4.4M at 256, p50 0.75 against 3.4 ms.
            Mode::Batch => (BATCH_WINDOW_MESSAGES / self.batch.max(1)).clamp(1, 256),
            _ => 256,
        })
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("kib").or(t.strip_suffix('k')) {
        (n, 1024)
    } else if let Some(n) = t.strip_suffix("mib").or(t.strip_suffix('m')) {
        (n, 1024 * 1024)
    } else {
        (t.as_str(), 1)
    };
    let n: usize = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 128, 1k, 64KiB)"))?;
    Ok(n * mult)
}

fn parse_size_range(s: &str) -> Result<(usize, usize), String> {
    let (lo, hi) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?} is not a range like 100..4KiB"))?;
    let (lo, hi) = (parse_size(lo)?, parse_size(hi)?);
    if lo == 0 || lo > hi {
        return Err(format!("{s:?}: need 1 <= MIN <= MAX"));
    }
    Ok((lo, hi))
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{s:?} must be above zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `2` → first two CPUs; `0,1` → those CPUs.
pub fn parse_cores(s: &str) -> Result<rocketmq_tpc::CoreSelection, String> {
    let s = s.trim();
    if s.contains(',') {
        let cpus: Result<Vec<usize>, _> = s
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::parse)
            .collect();
        return cpus
            .map(rocketmq_tpc::CoreSelection::List)
            .map_err(|_| format!("--cores {s:?}: expected a count or a CPU list like 0,1"));
    }
    match s.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!(
            "--cores {s:?}: expected a count ≥ 1 or a CPU list like 0,1"
        )),
        Ok(n) => Ok(rocketmq_tpc::CoreSelection::Count(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cores() {
        assert_eq!(parse_size("128").unwrap(), 128);
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert!(parse_size("x").is_err());
        assert_eq!(
            parse_cores("2").unwrap(),
            rocketmq_tpc::CoreSelection::Count(2)
        );
        assert_eq!(
            parse_cores("0,1").unwrap(),
            rocketmq_tpc::CoreSelection::List(vec![0, 1])
        );
        assert!(parse_cores("0").is_err());
        assert_eq!(
            parse_cores("3,").unwrap(),
            rocketmq_tpc::CoreSelection::List(vec![3])
        );
        assert!(parse_cores("a,b").is_err());
        assert!(parse_secs("0").is_err());
        assert_eq!(parse_secs("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_size_range("100..4KiB").unwrap(), (100, 4096));
        assert!(parse_size_range("5..1").is_err());
        assert!(parse_size_range("0..1").is_err());
    }

    #[test]
    fn inflight_defaults_by_mode() {
        let inflight = |argv: &[&str]| Args::try_parse_from(argv).unwrap().inflight();
        assert_eq!(inflight(&["loadgen"]), 256);
        assert_eq!(
            inflight(&["loadgen", "--mode", "batch"]),
            64,
            "batches of 64"
        );
        assert_eq!(
            inflight(&["loadgen", "--mode", "batch", "--batch", "1"]),
            256
        );
        assert_eq!(
            inflight(&["loadgen", "--mode", "batch", "--batch", "256"]),
            16
        );
        assert_eq!(
            inflight(&["loadgen", "--mode", "batch", "--batch", "9000"]),
            1
        );
        assert_eq!(
            inflight(&[
                "loadgen",
                "--mode",
                "batch",
                "--batch",
                "64",
                "--inflight",
                "300"
            ]),
            300
        );
        assert_eq!(inflight(&["loadgen", "--mode", "auto-batch"]), 1024);
        assert_eq!(
            inflight(&["loadgen", "--mode", "auto-batch", "--batch", "256"]),
            4096
        );
        assert_eq!(
            inflight(&["loadgen", "--mode", "auto-batch", "--batch", "2"]),
            256
        );
        assert_eq!(
            inflight(&["loadgen", "--mode", "auto-batch", "--inflight", "7"]),
            7
        );
    }

    #[test]
    fn flags_parse() {
        let a = Args::try_parse_from([
            "loadgen", "--sink", "--mode", "oneway", "--size", "1k", "--json",
        ])
        .unwrap();
        assert!(a.sink && a.json);
        assert_eq!(a.mode, Mode::Oneway);
        let a =
            Args::try_parse_from(["loadgen", "--mode", "ordered", "--keys-count", "4"]).unwrap();
        assert_eq!((a.mode, a.keys_count), (Mode::Ordered, Some(4)));
        let a = Args::try_parse_from(["loadgen", "--mode", "transaction"]).unwrap();
        assert_eq!(a.mode, Mode::Transaction);
        assert!(Args::try_parse_from(["loadgen", "--sink", "--namesrv", "x:1"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--bogus"]).is_err());
    }
}

/// What message bodies contain (`--body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BodyKind {
    /// Seeded random bytes.
    Random,
    /// JSON-like text records.
    Text,
    /// The byte `x` repeated.
    X,
}

impl BodyKind {
    /// A body of `len` bytes of this kind (the same for every run: seeded).
    pub fn make(self, len: usize) -> Vec<u8> {
        match self {
            BodyKind::X => vec![b'x'; len],
            BodyKind::Random => {
                let mut state = 0x2545_F491_4F6C_DD1Du64;
                (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state >> 24) as u8
                    })
                    .collect()
            }
            BodyKind::Text => {
                let mut out = Vec::with_capacity(len + 96);
                let mut i = 0u64;
                while out.len() < len {
                    let record = format!(
                        "{{\"order\":{i},\"customer\":\"c-{}\",\"amount\":{}.{:02},\"status\":\"{}\"}}\n",
                        i * 7919 % 10_007,
                        i * 31 % 1000,
                        i % 100,
                        ["created", "paid", "shipped", "delivered"][(i % 4) as usize]
                    );
                    out.extend_from_slice(record.as_bytes());
                    i += 1;
                }
                out.truncate(len);
                out
            }
        }
    }
}

/// `--compress-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressKind {
    /// zlib (every consumer reads it).
    Zlib,
    /// LZ4 (consumers need 4.9.4+).
    Lz4,
    /// ZSTD (consumers need 4.9.4+).
    Zstd,
}
