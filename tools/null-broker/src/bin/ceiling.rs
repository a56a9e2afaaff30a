//! The wire's ceiling for a producer on this machine: the cheapest possible producer, writing
//! one pre-encoded send frame over and over under a window, against the same null broker loadgen
//! and other clients meet. Producer figures in `tuning.md` are reported as a fraction of it.
//!
//! ```text
//! ceiling [--seconds S] [--size B] [--batch N] [--window W] [--cpu C] [--broker-cpu B]
//!         [--namesrv host:port]
//! ```
//!
//! One thread pinned to `--cpu` (default 0) writes `--window` frames (default 1024; a
//! `SEND_MESSAGE_V2` with a `--size`-byte body, default 128, or with `--batch N` a
//! `SEND_BATCH_MESSAGE` of N such messages) in two halves, each half one `write`, and writes a half
//! again whenever the answers to the previous one have arrived. The null broker runs in-process
//! on `--broker-cpu` (default 1) unless `--namesrv` names a running one (`null-broker`). It
//! prints one JSON line: messages and frames per second, MB/s of frames, and the writer thread's
//! CPU per message.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use null_broker::measure::{number_arg, pin, thread_cpu_s};
use rocketmq_tpc::protocol::batch::encode_record;
use rocketmq_tpc::protocol::frame::{self, MAX_FRAME_BYTES};
use rocketmq_tpc::protocol::header_json::CommandHead;
use rocketmq_tpc::protocol::send_request_header::SendMessageRequestHeaderV2;
use rocketmq_tpc::protocol::{HeaderEncoding, LanguageCode};

/// The options, from the command line.
struct Options {
    seconds: u64,
    size: usize,
    batch: usize,
    window: usize,
    cpu: usize,
    broker_cpu: usize,
    namesrv: Option<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let number = |name: &str, default: usize| number_arg(args, name, default);
    let namesrv = match args.iter().position(|a| a == "--namesrv") {
        None => None,
        Some(i) => Some(args.get(i + 1).ok_or("--namesrv needs host:port")?.clone()),
    };
    Ok(Options {
        seconds: number("--seconds", 4)?.clamp(1, 3600) as u64,
        size: number("--size", 128)?.clamp(1, 1 << 20),
        batch: number("--batch", 0)?.min(4096),
        window: number("--window", 1024)?.clamp(2, 1 << 16),
        cpu: number("--cpu", 0)?,
        broker_cpu: number("--broker-cpu", 1)?,
        namesrv,
    })
}

/// Properties as a producer writes them for a plain message (a unique id and WAIT).
const PROPERTIES: &str = "UNIQ_KEY\u{1}7F0000010000000000000000000000AA\u{2}WAIT\u{1}true\u{2}";

/// One send frame: a single message, or a batch of `batch` messages, each of `size` bytes.
fn send_frame(size: usize, batch: usize) -> BytesMut {
    let body = vec![b'x'; size];
    let (code, wire_body, properties) = if batch == 0 {
        (310, body, PROPERTIES)
    } else {
        let mut records = BytesMut::new();
        for _ in 0..batch {
            encode_record(&mut records, 0, &body, PROPERTIES);
        }
        (320, records.to_vec(), "")
    };
    let header = SendMessageRequestHeaderV2 {
        producer_group: "ceiling",
        topic: "BenchTopic",
        default_topic: "TBW102",
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: 0,
        born_timestamp: 1_764_000_000_000,
        flag: 0,
        properties,
        reconsume_times: 0,
        unit_mode: false,
        max_reconsume_times: None,
        batch: batch > 0,
        broker_name: Some("sink"),
        constant_fields: None,
    };
    let head = CommandHead {
        code,
        language: LanguageCode::RUST,
        version: rocketmq_tpc::internals::DEFAULT_VERSION,
        opaque: 1,
        flag: 0,
        remark: None,
    };
    let mut out = BytesMut::new();
    frame::encode(
        &mut out,
        HeaderEncoding::Binary,
        &head,
        &header,
        &wire_body,
        MAX_FRAME_BYTES,
    )
    .expect("a frame within the limits");
    out
}

/// Reads until `frames` whole answer frames have arrived; `pending` keeps a partial frame.
fn read_answers(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    chunk: &mut [u8],
    mut frames: usize,
) -> std::io::Result<()> {
    loop {
        let mut at = 0;
        while frames > 0 && pending.len() >= at + 4 {
            let len = u32::from_be_bytes(pending[at..at + 4].try_into().unwrap()) as usize;
            if pending.len() < at + 4 + len {
                break;
            }
            at += 4 + len;
            frames -= 1;
        }
        pending.drain(..at);
        if frames == 0 {
            return Ok(());
        }
        let n = stream.read(chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

fn run(options: Options) -> Result<String, String> {
    let sink;
    let addr = match &options.namesrv {
        Some(addr) => addr.clone(),
        None => {
            sink = null_broker::NullBroker::start(options.broker_cpu, 8)
                .map_err(|e| format!("null broker: {e}"))?;
            sink.addr().to_owned()
        }
    };
    pin(options.cpu);
    let frame = send_frame(options.size, options.batch);
    let half = options.window / 2;
    let half_bytes: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * half)
        .collect();
    let mut stream = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| format!("null broker at {addr}: {e}");
    let (mut pending, mut chunk) = (Vec::with_capacity(1 << 20), vec![0u8; 1 << 20]);
    // Warm-up: one round of both halves.
    stream.write_all(&half_bytes).map_err(io)?;
    stream.write_all(&half_bytes).map_err(io)?;
    read_answers(&mut stream, &mut pending, &mut chunk, 2 * half).map_err(io)?;
    stream.write_all(&half_bytes).map_err(io)?;
    stream.write_all(&half_bytes).map_err(io)?;
    let (started, cpu_from) = (Instant::now(), thread_cpu_s());
    let until = started + Duration::from_secs(options.seconds);
    let mut frames = 0u64;
    while Instant::now() < until {
        read_answers(&mut stream, &mut pending, &mut chunk, half).map_err(io)?;
        frames += half as u64;
        stream.write_all(&half_bytes).map_err(io)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = thread_cpu_s() - cpu_from;
    let messages = frames * options.batch.max(1) as u64;
    Ok(format!(
        "{{\"size\":{},\"batch\":{},\"window\":{},\"frame_bytes\":{},\"seconds\":{elapsed:.2},\"frames_per_s\":{:.0},\"msgs_per_s\":{:.0},\"mb_per_s\":{:.1},\"writer_cpu_us_per_msg\":{:.3}}}",
        options.size,
        options.batch,
        options.window,
        frame.len(),
        frames as f64 / elapsed,
        messages as f64 / elapsed,
        (frames * frame.len() as u64) as f64 / elapsed / 1e6,
        cpu * 1e6 / messages.max(1) as f64,
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("ceiling [--seconds S] [--size B] [--batch N] [--window W] [--cpu C] [--broker-cpu B] [--namesrv host:port]");
        return;
    }
    match parse(&args).and_then(run) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("ceiling: {e}");
            std::process::exit(2);
        }
    }
}
