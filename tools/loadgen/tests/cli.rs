//! loadgen end to end: every mode against the sink, short runs against the local real broker,
//! the JSON shape, the output files, and one-line errors.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

/// Runs loadgen; kills it and fails the test when it is not done within `deadline`.
fn loadgen_within(args: &[&str], deadline: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loadgen");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for loadgen") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "loadgen {args:?} still running after {deadline:?}; stderr: {}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        text.trim().lines().count(),
        1,
        "stdout must hold exactly one JSON object: {text}"
    );
    serde_json::from_str(text.trim()).expect("valid JSON")
}

const KEYS: &[&str] = &[
    "mode",
    "size",
    "cores",
    "sent",
    "acked",
    "failed",
    "elapsed_s",
    "msgs_per_s",
    "mb_per_s",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "cpu_s",
    "cpu_us_per_msg",
];

#[test]
fn every_mode_against_the_sink() {
    for mode in ["sync", "async", "oneway", "batch", "auto-batch"] {
        let out = loadgen(&[
            "--sink",
            "--mode",
            mode,
            "--messages",
            "3000",
            "--json",
            "--threads",
            if mode == "sync" { "4" } else { "0" },
        ]);
        let v = json(&out);
        for key in KEYS {
            assert!(v.get(key).is_some(), "{mode}: missing {key} in {v}");
        }
        assert_eq!(v["mode"], mode);
        assert_eq!(v["sent"], 3000, "{mode}: {v}");
        assert_eq!(v["acked"], 3000, "{mode}: {v}");
        assert_eq!(v["failed"], 0);
    }
}

/// `--body` picks what bodies hold: random bytes (the default) do not compress, text does.
#[test]
fn body_kinds_change_what_compression_saves() {
    let mut written = Vec::new();
    for body in ["random", "text", "x"] {
        let out = loadgen(&[
            "--sink",
            "--mode",
            "async",
            "--messages",
            "2000",
            "--size",
            "8192",
            "--body",
            body,
            "--json",
            "--threads",
            "0",
            // Unoptimised zlib of 8 KiB bodies is slow on a busy machine; the wire bytes are
            // what this test is about, not the budget.
            "--timeout-ms",
            "30000",
        ]);
        let v = json(&out);
        assert_eq!(v["body"], body, "{v}");
        assert_eq!(v["acked"], 2000, "{body}: {v}");
        written.push(v["wire_bytes"].as_f64().unwrap());
    }
    // Bytes on the wire: random bodies stay about their size, text shrinks, `x` vanishes.
    assert!(
        written[0] > written[1] * 2.0,
        "random {} vs text {}",
        written[0],
        written[1]
    );
    assert!(
        written[1] > written[2],
        "text {} vs x {}",
        written[1],
        written[2]
    );
}

/// Ordered sends (by key, pipelined on the core or from threads) and transactions against the
/// null broker, which acks half messages and takes END_TRANSACTION (oneway) without an answer.
#[test]
fn ordered_and_transaction_against_the_sink() {
    let deadline = Duration::from_secs(60);
    for threads in ["0", "3"] {
        let v = json(&loadgen_within(
            &[
                "--sink",
                "--mode",
                "ordered",
                "--keys-count",
                "5",
                "--threads",
                threads,
                "--messages",
                "3000",
                // One request in flight per queue: the last of 600 per queue waits for the 599
                // before it, which on a loaded 2-core machine can take longer than 3 s.
                "--timeout-ms",
                "30000",
                "--json",
            ],
            deadline,
        ));
        for key in KEYS {
            assert!(v.get(key).is_some(), "ordered: missing {key} in {v}");
        }
        assert_eq!(v["mode"], "ordered");
        assert_eq!(
            (v["sent"].as_u64(), v["acked"].as_u64()),
            (Some(3000), Some(3000)),
            "{v}"
        );
        assert_eq!(v["failed"], 0, "{v}");
        assert_eq!(v["keys_count"], 5);
        // The null broker's route has eight queues; keys "0".."4" hash to five of them.
        assert_eq!(
            (v["queues"].as_u64(), v["queues_used"].as_u64()),
            (Some(8), Some(5))
        );
        assert_eq!(v["keys_on_busiest_queue"], 1);
    }
    let v = json(&loadgen_within(
        &["--sink", "--mode", "ordered", "--messages", "500", "--json"],
        deadline,
    ));
    assert_eq!(v["keys_count"], 16, "the default: {v}");
    assert_eq!(v["acked"], 500);

    let v = json(&loadgen_within(
        &[
            "--sink",
            "--mode",
            "transaction",
            "--threads",
            "4",
            "--messages",
            "2000",
            "--keys",
            "tx",
            "--json",
        ],
        deadline,
    ));
    for key in KEYS {
        assert!(v.get(key).is_some(), "transaction: missing {key} in {v}");
    }
    assert_eq!(v["mode"], "transaction");
    assert_eq!(v["threads"], 4);
    assert_eq!(
        (v["sent"].as_u64(), v["acked"].as_u64()),
        (Some(2000), Some(2000)),
        "{v}"
    );
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["transaction_checks"], 0);
    assert!(v["latency_note"]
        .as_str()
        .unwrap()
        .contains("END_TRANSACTION"));
    // Sync's default of 16 threads applies to transactions too.
    let v = json(&loadgen_within(
        &[
            "--sink",
            "--mode",
            "transaction",
            "--duration",
            "0.5",
            "--json",
        ],
        deadline,
    ));
    assert_eq!(v["threads"], 16);
    assert!(v["acked"].as_u64().unwrap() > 0 && v["failed"] == 0, "{v}");
}

#[test]
fn application_threads_rate_sizes_tags_and_files() {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hist = dir.join("latency.hgrm");
    let svg = dir.join("report.svg");
    let out = loadgen(&[
        "--sink",
        "--mode",
        "async",
        "--threads",
        "2",
        "--inflight",
        "16",
        "--rate",
        "2000",
        "--duration",
        "1",
        "--size-range",
        "10..2KiB",
        "--tags",
        "t",
        "--keys",
        "k",
        "--compress-over",
        "1KiB",
        "--histogram",
        hist.to_str().unwrap(),
        "--report",
        svg.to_str().unwrap(),
        "--json",
    ]);
    let v = json(&out);
    let acked = v["acked"].as_u64().unwrap();
    assert!(
        (1000..=2600).contains(&acked),
        "open loop at 2000/s for 1 s: {v}"
    );
    assert!(std::fs::read_to_string(&hist)
        .unwrap()
        .contains("Percentile"));
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    std::fs::remove_dir_all(dir).ok();
}

/// Open loop on the cores, through delivery reports (one pacing loop) and through futures (a
/// task per send): both send at the asked rate, not as fast as they can, and every message
/// sent gets its outcome.
#[test]
fn open_loop_on_the_cores_keeps_the_rate() {
    for futures in [false, true] {
        let mut args = vec![
            "--sink",
            "--mode",
            "async",
            "--rate",
            "3000",
            "--duration",
            "2",
            "--json",
        ];
        if futures {
            args.push("--futures");
        }
        let v = json(&loadgen_within(&args, Duration::from_secs(120)));
        let (sent, acked) = (v["sent"].as_u64().unwrap(), v["acked"].as_u64().unwrap());
        assert!(
            (3000..=6300).contains(&acked),
            "open loop at 3000/s for 2 s (futures: {futures}): {v}"
        );
        assert_eq!(sent, acked, "every message sent has its outcome: {v}");
    }
}

#[test]
fn human_summary_by_default() {
    let out = loadgen(&["--sink", "--messages", "500"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("loadgen summary") && text.contains("msgs_per_s"),
        "{text}"
    );
}

#[test]
fn config_file_is_used_and_its_errors_name_the_key() {
    let dir = std::env::temp_dir();
    let good = dir.join(format!("lg-good-{}.toml", std::process::id()));
    std::fs::write(
        &good,
        "producer_group = \"from_file\"\n[core_defaults]\nmax_inflight = 512\n",
    )
    .unwrap();
    json(&loadgen(&[
        "--sink",
        "--messages",
        "500",
        "--json",
        "--config",
        good.to_str().unwrap(),
    ]));
    let bad = dir.join(format!("lg-bad-{}.toml", std::process::id()));
    std::fs::write(&bad, "producer_group = \"g\"\nmax_inflite = 3\n").unwrap();
    let out = loadgen(&[
        "--sink",
        "--messages",
        "10",
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_inflite"), "{err}");
    std::fs::remove_file(good).ok();
    std::fs::remove_file(bad).ok();
}

#[test]
fn bad_input_is_one_line_and_non_zero() {
    for (args, code) in [
        (&["--bogus"][..], 2),
        (&["--mode", "sideways"][..], 2),
        (&["--sink", "--size", "0"][..], 1),
        (&["--sink", "--size", "5MiB"][..], 1),
        (&["--namesrv", "no-port"][..], 1),
        (&["--sink", "--cores", "0"][..], 1),
        (
            &["--sink", "--mode", "transaction", "--threads", "0"][..],
            1,
        ),
        (&["--sink", "--mode", "async", "--keys-count", "4"][..], 1),
        (&["--sink", "--mode", "ordered", "--keys-count", "0"][..], 1),
        (
            &[
                "--namesrv",
                "127.0.0.1:1",
                "--timeout-ms",
                "300",
                "--messages",
                "5",
            ][..],
            1,
        ),
    ] {
        let out = loadgen(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?} printed {err}");
        assert!(lines[0].starts_with("loadgen: "), "{args:?} printed {err}");
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn default_run_brings_up_the_local_real_broker() {
    let out = loadgen(&["--messages", "2000", "--json"]);
    let v = json(&out);
    assert_eq!(v["target"], "local-broker");
    assert_eq!(v["acked"], 2000, "{v}");
    assert!(v.get("broker_cpu_s").is_some());
}

/// Installs the real servers when the cache lacks them (long, once; no deadline on that).
fn install_servers() {
    let install = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../rocketmq-local"))
        .arg("install")
        .status()
        .expect("run tools/rocketmq-local install");
    assert!(install.success(), "tools/rocketmq-local install failed");
}

/// One short run of each of the ordered and transaction modes against the local real broker.
#[test]
fn ordered_and_transaction_against_the_local_real_broker() {
    install_servers();
    let deadline = Duration::from_secs(120);
    let v = json(&loadgen_within(
        &["--mode", "ordered", "--messages", "2000", "--json"],
        deadline,
    ));
    assert_eq!(v["target"], "local-broker");
    assert_eq!(v["acked"], 2000, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert!(v["queues_used"].as_u64().unwrap() >= 1, "{v}");
    let v = json(&loadgen_within(
        &[
            "--mode",
            "transaction",
            "--threads",
            "4",
            "--messages",
            "500",
            "--json",
        ],
        deadline,
    ));
    assert_eq!(v["target"], "local-broker");
    assert_eq!(v["acked"], 500, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
}

#[test]
fn topic_cpu_list_batch_size_and_linger() {
    // A CPU list (not a count), an explicit topic, batch size and linger.
    let out = loadgen(&[
        "--sink",
        "--cores",
        "0,",
        "--topic",
        "loadgen_flags_test",
        "--mode",
        "auto-batch",
        "--batch",
        "8",
        "--linger-us",
        "200",
        "--messages",
        "2000",
        "--json",
    ]);
    // "0," parses as the list [0]; with one CPU only it still works (sink shares it).
    let v = json(&out);
    assert_eq!(v["cores"], 1);
    assert_eq!(v["batch"], 8);
    assert_eq!(v["acked"], 2000);
    let out = loadgen(&[
        "--sink",
        "--mode",
        "batch",
        "--batch",
        "10",
        "--messages",
        "1000",
        "--json",
    ]);
    let v = json(&out);
    assert_eq!(v["acked"], 1000);
    assert_eq!(v["batch"], 10);
    assert!(v["latency_note"].as_str().unwrap().contains("per batch"));
    let bad = loadgen(&["--sink", "--topic", "bad topic!", "--messages", "1"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("topic"));
}

/// ACL flags against a local rocketmq-rust broker with authentication on: the right secret
/// stores every message; a wrong one fails every message at once with `access_denied` (no
/// retries), and loadgen exits non-zero saying so in one line.
#[test]
fn acl_flags_against_a_broker_with_authentication() {
    install_servers();
    let started = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../rocketmq-local"))
        .args(["start", "--owner-pid", &std::process::id().to_string()])
        .env(
            "ROCKETMQ_LOCAL_BROKER_EXTRA",
            "authenticationEnabled=true\ninitAuthenticationUser=tpcadmin:tpcadmin-secret",
        )
        .stderr(Stdio::inherit())
        .output()
        .expect("run tools/rocketmq-local start");
    assert!(
        started.status.success(),
        "tools/rocketmq-local start failed"
    );
    let text = String::from_utf8_lossy(&started.stdout);
    let namesrv = text
        .lines()
        .find_map(|l| l.strip_prefix("NAMESRV_ADDR="))
        .expect("NAMESRV_ADDR")
        .to_owned();
    let run = |secret: &str| {
        loadgen_within(
            &[
                "--namesrv",
                &namesrv,
                "--mode",
                "sync",
                "--threads",
                "2",
                "--messages",
                "200",
                "--access-key",
                "tpcadmin",
                "--secret-key",
                secret,
                "--json",
            ],
            Duration::from_secs(60),
        )
    };
    let good = run("tpcadmin-secret");
    let v = json(&good);
    assert_eq!(v["acked"], 200, "{v}");
    let started = Instant::now();
    let wrong = run("not-the-secret");
    let took = started.elapsed();
    assert_eq!(wrong.status.code(), Some(4), "{wrong:?}");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("loadgen: every message failed"))
        .unwrap_or_else(|| panic!("no one-line error in {stderr}"));
    assert!(line.contains("access_denied x200"), "{line}");
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&wrong.stdout).trim()).expect("JSON");
    assert_eq!(v["retries"], 0, "access denied is never retried: {v}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

/// One scrape of `GET /metrics` at `addr` (None while nothing answers yet).
fn scrape(addr: &str) -> Option<String> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: loadgen\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

/// The sum of every sample of `name` (any labels) in a Prometheus text page.
fn sample_sum(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `--prometheus` during a run against the local real broker: a scrape finds non-zero sent and
/// acked counters (the producer's and loadgen's own) and a latency histogram with samples;
/// `--stats-interval` prints JSON lines with the producer's totals on stderr.
#[test]
fn prometheus_endpoint_and_stats_lines_during_a_real_broker_run() {
    install_servers();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let run_addr = addr.clone();
    let run = std::thread::spawn(move || {
        loadgen_within(
            &[
                "--duration",
                "10",
                "--rate",
                "3000",
                "--prometheus",
                &run_addr,
                "--stats-interval",
                "1",
                "--json",
            ],
            Duration::from_secs(120),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    let page = loop {
        if let Some(page) = scrape(&addr) {
            let ready = sample_sum(&page, "rocketmq_tpc_messages_acked_total") > 0.0
                && sample_sum(&page, "rocketmq_tpc_send_latency_seconds_count") > 0.0
                && sample_sum(&page, "loadgen_messages_acked_total") > 0.0;
            if ready {
                break page;
            }
            last = Some(page);
        }
        assert!(
            Instant::now() < deadline && !run.is_finished(),
            "no scrape with acked counters and latency samples; last page: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for name in [
        "rocketmq_tpc_messages_started_total",
        "loadgen_messages_sent_total",
    ] {
        assert!(sample_sum(&page, name) > 0.0, "{name} in {page}");
    }
    assert!(
        page.contains("rocketmq_tpc_send_latency_seconds_bucket{"),
        "a latency histogram: {page}"
    );
    assert!(page.contains("core=\"0\""), "labelled by core: {page}");
    let out = run.join().expect("the loadgen thread");
    let v = json(&out);
    assert!(v["acked"].as_u64().unwrap() > 0, "{v}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("client_id").is_some())
        .collect();
    assert!(lines.len() >= 3, "stats lines on stderr: {stderr}");
    assert!(
        lines.iter().any(|l| l["acked"].as_u64() > Some(0)),
        "a stats line with acked messages: {stderr}"
    );
}

/// `--tls` (the system's CA bundle) against the local real broker, which speaks plaintext: the
/// run fails at once with the TLS error in its last line, non-zero, not a hang.
#[test]
fn tls_against_a_plaintext_broker_fails_in_one_line() {
    install_servers();
    let out = loadgen_within(
        &["--tls", "--messages", "10", "--timeout-ms", "2000"],
        Duration::from_secs(120),
    );
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(last.contains("TLS"), "last line: {last:?}; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
