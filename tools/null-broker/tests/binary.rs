//! The `null-broker` binary: a producer's sends to it are acked, and it reports them when its
//! standard input closes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rocketmq_tpc::{Message, Producer};

#[test]
fn sends_to_the_binary_are_acked_and_counted() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_null-broker"))
        .args(["--cpu", "0", "--queues", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start null-broker");
    // Lines are read on a thread, so every wait below has a deadline.
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("NAMESRV_ADDR=… within 10 s of starting");
    let addr = first
        .strip_prefix("NAMESRV_ADDR=")
        .unwrap_or_else(|| panic!("expected NAMESRV_ADDR=…, got {first:?}"))
        .to_owned();
    let producer = Producer::builder()
        .namesrv(&addr)
        .producer_group("null_broker_test")
        .cores(1)
        .send_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for i in 0..10 {
        let r = producer
            .send(Message::new("NullTopic", format!("m{i}")))
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
        assert!(r.queue.queue_id < 4, "{r:?}");
    }
    producer.shutdown(Duration::from_secs(5));
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "null-broker did not stop when stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let last = lines
        .recv_timeout(Duration::from_secs(5))
        .expect("ACKED=… after stdin closed");
    assert_eq!(last, "ACKED=10", "what it reported");
}

#[test]
fn bad_arguments_are_one_line_and_non_zero() {
    for args in [
        &["--queues", "0"][..],
        &["--cpu", "x"],
        &["--bogus"],
        &["--listen"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_null-broker"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

/// Runs a tool binary, failing the test if it has not exited within 60 s; its stdout.
fn run_within(exe: &str, args: &[&str]) -> String {
    let child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {exe}: {e}"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{exe} {args:?} did not exit within 60 s"))
        .expect("its output");
    assert!(
        out.status.success(),
        "{exe} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The number after `"name":` in a one-line JSON report.
fn figure(line: &str, name: &str) -> f64 {
    let key = format!("\"{name}\":");
    let at = line
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {line}"))
        + key.len();
    let end = line[at..].find([',', '}']).map_or(line.len(), |e| at + e);
    line[at..end]
        .parse()
        .unwrap_or_else(|_| panic!("{name} is a number in {line}"))
}

/// The ceiling tool moves single frames and batches through the null broker and reports them.
#[test]
fn ceiling_reports_what_it_moved() {
    for args in [
        &["--seconds", "1"][..],
        &["--seconds", "1", "--batch", "8", "--window", "64"],
    ] {
        let line = run_within(env!("CARGO_BIN_EXE_ceiling"), args);
        assert!(figure(&line, "frames_per_s") > 0.0, "{args:?}: {line}");
        let per_frame = if args.contains(&"--batch") { 8.0 } else { 1.0 };
        let (msgs, frames) = (figure(&line, "msgs_per_s"), figure(&line, "frames_per_s"));
        assert!(
            (msgs - frames * per_frame).abs() <= per_frame,
            "{args:?}: {line}"
        );
    }
}

/// The floor tool, back to back and paced, reports latency and the client's CPU per round.
#[test]
fn pingpong_reports_latency_and_cpu() {
    for args in [
        &["--rounds", "500"][..],
        &["--rounds", "500", "--rate", "2000"],
    ] {
        let line = run_within(env!("CARGO_BIN_EXE_pingpong"), args);
        assert!(figure(&line, "p50_us") > 0.0, "{args:?}: {line}");
        assert!(
            figure(&line, "client_cpu_us_per_round") >= 0.0,
            "{args:?}: {line}"
        );
        assert_eq!(figure(&line, "rounds"), 500.0, "{line}");
    }
}
