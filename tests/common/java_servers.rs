//! Apache RocketMQ 4.9.7 (Java) NameServer + broker for `tests/java_broker.rs`, built and started
//! with the scripts in `../shared/java-rocketmq` (its README) and stopped when the test process exits.
//!
//! - `JAVA_NAMESRV_ADDR` + `JAVA_BROKER_ADDRS` (`host:port[;host:port]`): use servers already running.
//! - Otherwise the shared folder is `$ROCKETMQ_SHARED` or `../shared` beside this crate;
//!   `java-rocketmq/build.sh` runs first (it does nothing once built; the first build takes about a
//!   minute and may `apt-get install` a JDK), then `start.sh` starts a NameServer and one broker on
//!   free loopback ports in a fresh temporary instance dir (`RMQ_RUN`).
//! - A detached watchdog waits for this process to exit, then runs `stop.sh --wipe` on that dir and
//!   deletes it (set `JAVA_ROCKETMQ_KEEP_RUN=1` to keep its logs in `$TMPDIR/java-rocketmq-*`).
//! - Broker heap: `BROKER_HEAP` (default here 512m), NameServer heap `NAMESRV_HEAP` (start.sh's 256m).
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Broker settings of every instance started here (`BROKER_EXTRA` lines; start.sh writes them
/// after its own, and for a repeated key the last line wins).
pub const TEST_BROKER_PROPERTIES: &str = "\
autoCreateTopicEnable=true
transactionTimeOut=2000
transactionCheckInterval=2000
flushIntervalCommitLog=100
flushCommitLogLeastPages=0
flushIntervalConsumeQueue=100
flushConsumeQueueLeastPages=0
mappedFileSizeConsumeQueue=600000
maxHashSlotNum=50000
maxIndexNum=200000
waitTimeMillsInSendQueue=1000
";
// Why: transaction check-back after 2 s instead of 6 s / 60 s; flush every 100 ms whatever the
// amount (stock: 500 ms / 1 s and at least 4 / 2 pages); 30k-entry consume-queue files and a 4 MB
// index file instead of 6 MB and 420 MB (sparse) ones; the commit log is 64 MiB (COMMITLOG_MB
// below, stock 1 GiB). The 200 ms default wait in the send queue turns one GC pause or a busy
// 2-core machine into SYSTEM_BUSY refusals.

/// Commit-log file size in MiB (start.sh writes `mappedFileSizeCommitLog` from it).
const COMMITLOG_MB: &str = "64";
/// Broker heap unless `BROKER_HEAP` is set (start.sh's default is 1g).
const DEFAULT_BROKER_HEAP: &str = "512m";

const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);
const START_LIMIT: Duration = Duration::from_secs(300);
const STOP_LIMIT: Duration = Duration::from_secs(90);

/// A NameServer and its brokers.
#[derive(Debug, Clone)]
pub struct JavaServers {
    /// `host:port` of the NameServer.
    pub namesrv: String,
    /// `host:port` of each broker.
    pub brokers: Vec<String>,
    /// The instance dir (`RMQ_RUN`: confs, logs, store, PIDs) when this process started them;
    /// `None` for servers given by `JAVA_NAMESRV_ADDR` / `JAVA_BROKER_ADDRS`.
    pub run_dir: Option<PathBuf>,
}

/// The shared Java NameServer + broker of this test process, started on first use.
pub fn java_rocketmq() -> &'static JavaServers {
    static CELL: OnceLock<Result<JavaServers, String>> = OnceLock::new();
    let servers = CELL.get_or_init(|| {
        if let (Ok(namesrv), Ok(brokers)) = (
            std::env::var("JAVA_NAMESRV_ADDR"),
            std::env::var("JAVA_BROKER_ADDRS"),
        ) {
            return Ok(JavaServers {
                namesrv,
                brokers: brokers
                    .split(';')
                    .map(str::trim)
                    .filter(|b| !b.is_empty())
                    .map(str::to_owned)
                    .collect(),
                run_dir: None,
            });
        }
        start_cluster("", &[], &[])
    });
    match servers {
        Ok(servers) => servers,
        Err(e) => panic!("{e}"),
    }
}

/// Starts another NameServer + broker pair owned by this process (stopped and wiped at exit),
/// with `extra_properties` (properties lines, e.g. `"aclEnable=true"`) after
/// [`TEST_BROKER_PROPERTIES`], so they override it. Always starts its own servers (needs the
/// shared folder even when `JAVA_NAMESRV_ADDR` is set).
pub fn start_extra_broker_cluster(extra_properties: &str) -> JavaServers {
    start_cluster(extra_properties, &[], &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// [`start_extra_broker_cluster`] with `files` (path relative to the instance dir, content)
/// written before the servers start, e.g. `("home/conf/plain_acl.yml", accounts)`.
pub fn start_extra_broker_cluster_with_files(
    extra_properties: &str,
    files: &[(&str, &str)],
) -> JavaServers {
    start_cluster(extra_properties, files, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// [`start_extra_broker_cluster`] with environment variables for start.sh (e.g.
/// `BROKER_JAVA_OPTS` and `NAMESRV_JAVA_OPTS` with TLS settings).
pub fn start_extra_broker_cluster_with_env(
    extra_properties: &str,
    env: &[(&str, &str)],
) -> JavaServers {
    start_cluster(extra_properties, &[], env).unwrap_or_else(|e| panic!("{e}"))
}

/// Where build.sh puts the built servers and client (`$RMQ_JAVA`, default
/// `${XDG_CACHE_HOME:-$HOME/.cache}/rocketmq-java-4.9.7`).
pub fn java_dir() -> PathBuf {
    std::env::var_os("RMQ_JAVA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache.join("rocketmq-java-4.9.7")
        })
}

/// `$ROCKETMQ_SHARED/java-rocketmq` or `../shared/java-rocketmq`, checked.
fn scripts_dir() -> Result<PathBuf, String> {
    let shared = std::env::var_os("ROCKETMQ_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")));
    let dir = shared.join("java-rocketmq");
    for script in ["build.sh", "start.sh", "stop.sh"] {
        if !dir.join(script).is_file() {
            return Err(format!(
                "the Apache RocketMQ 4.9.7 suite needs {}: {script} is missing there. Set \
                 ROCKETMQ_SHARED to the folder holding java-rocketmq/, or JAVA_NAMESRV_ADDR and \
                 JAVA_BROKER_ADDRS to running servers",
                dir.display()
            ));
        }
    }
    Ok(dir)
}

/// Runs build.sh once per process, under a file lock so that concurrent test processes do not
/// build into the same folder at once.
fn build(scripts: &Path) -> Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let started = Instant::now();
            let mut cmd = Command::new("bash");
            cmd.arg("-c")
                .arg(
                    r#"work=${RMQ_JAVA:-${XDG_CACHE_HOME:-$HOME/.cache}/rocketmq-java-4.9.7}
mkdir -p "$(dirname "$work")"
exec 9>"$work.lock"
if command -v flock >/dev/null; then flock 9; fi
exec bash "$0""#,
                )
                .arg(scripts.join("build.sh"));
            let done = run_with_deadline(cmd, "java-rocketmq/build.sh", BUILD_LIMIT)?;
            if !done.status.success() {
                return Err(format!(
                    "java-rocketmq/build.sh failed ({}):\n{}{}",
                    done.status, done.stdout, done.stderr
                ));
            }
            if started.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "java-rocketmq: built Apache RocketMQ 4.9.7 in {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(())
        })
        .clone()
}

fn start_cluster(
    extra_properties: &str,
    files: &[(&str, &str)],
    env: &[(&str, &str)],
) -> Result<JavaServers, String> {
    let scripts = scripts_dir()?;
    build(&scripts)?;
    // One start at a time in this process: the ports picked below stay free until the JVMs bind
    // them, and two JVM start-ups at once only slow each other on a small machine.
    static START: Mutex<()> = Mutex::new(());
    let _one_at_a_time = START.lock().unwrap_or_else(|e| e.into_inner());
    let mut failures = Vec::new();
    for _attempt in 0..3 {
        let run = new_run_dir()?;
        spawn_watchdog(&scripts, &run)?;
        if files.iter().any(|(path, _)| path.starts_with("home/conf/")) {
            // start.sh copies the stock conf (logback, ACL) only into an instance without one:
            // copy it first, then overwrite the given files.
            let java_dir = java_dir();
            std::fs::create_dir_all(run.join("home"))
                .map_err(|e| format!("{}: {e}", run.display()))?;
            let copied = Command::new("cp")
                .arg("-r")
                .arg(java_dir.join("home/conf"))
                .arg(run.join("home/conf"))
                .status()
                .map_err(|e| format!("copy the stock conf: {e}"))?;
            if !copied.success() {
                return Err(format!("copy {}/home/conf failed", java_dir.display()));
            }
        }
        for (path, content) in files {
            let path = run.join(path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            std::fs::write(&path, content).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let (ns_port, broker_port) = free_ports()?;
        match start_instance(
            &scripts,
            &run,
            (ns_port, broker_port),
            extra_properties,
            env,
        ) {
            Ok(servers) => return Ok(servers),
            Err(e) => {
                stop_now(&scripts, &run);
                let port_clash = e.contains("Address already in use");
                failures.push(e);
                if !port_clash {
                    break;
                }
            }
        }
    }
    Err(failures.join("\n\n--- retried on other ports ---\n\n"))
}

/// A fresh, empty instance dir under the temporary folder.
fn new_run_dir() -> Result<PathBuf, String> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "java-rocketmq-{}-{nanos:09}-{seq}",
        std::process::id()
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// A detached bash loop that outlives this process: once this process is gone (and a start.sh
/// it left running has finished recording its PIDs), it stops the JVMs of `run` and wipes it.
fn spawn_watchdog(scripts: &Path, run: &Path) -> Result<(), String> {
    const WATCHDOG: &str = r#"owner=$1 run=$2 stop=$3 keep=$4
(
  trap '' HUP INT
  while kill -0 "$owner" 2>/dev/null; do sleep 0.5; done
  if [ -f "$run/start.pid" ]; then
    starter=$(cat "$run/start.pid")
    for ((i = 0; i < 600; i++)); do kill -0 "$starter" 2>/dev/null || break; sleep 0.5; done
  fi
  RMQ_RUN="$run" bash "$stop" --wipe
  [ "$keep" = 1 ] || rm -rf "$run"
) </dev/null >/dev/null 2>&1 &
disown"#;
    let keep = std::env::var("JAVA_ROCKETMQ_KEEP_RUN").unwrap_or_default();
    let status = Command::new("bash")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("java-rocketmq-watchdog")
        .arg(std::process::id().to_string())
        .arg(run)
        .arg(scripts.join("stop.sh"))
        .arg(keep)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of the terminal's process group: Ctrl-C on the test run does not reach it.
        .process_group(0)
        .status()
        .map_err(|e| format!("start the java-rocketmq watchdog: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "the java-rocketmq watchdog did not start: {status}"
        ))
    }
}

/// A NameServer port and a broker port whose VIP (port − 2) and HA (port + 1) ports are free
/// too, none of them handed out before by this process.
fn free_ports() -> Result<(u16, u16), String> {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    let bind = |port: u16| TcpListener::bind(("127.0.0.1", port));
    let mut held = Vec::new();
    let mut namesrv = None;
    for _ in 0..200 {
        let listener = bind(0).map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?
            .port();
        if given.contains(&port) {
            continue;
        }
        let Some(ns) = namesrv else {
            namesrv = Some(port);
            held.push(listener);
            continue;
        };
        if !(3..u16::MAX).contains(&port) {
            continue;
        }
        let (vip, ha) = (port - 2, port + 1);
        if [vip, ha].iter().any(|p| *p == ns || given.contains(p)) {
            continue;
        }
        let (Ok(vip_listener), Ok(ha_listener)) = (bind(vip), bind(ha)) else {
            continue;
        };
        drop((vip_listener, ha_listener, listener, held));
        given.extend([ns, port, vip, ha]);
        return Ok((ns, port));
    }
    Err("no three free loopback ports port-2, port, port+1 in 200 tries".into())
}

fn start_instance(
    scripts: &Path,
    run: &Path,
    (ns_port, broker_port): (u16, u16),
    extra_properties: &str,
    env: &[(&str, &str)],
) -> Result<JavaServers, String> {
    let started = Instant::now();
    let mut cmd = Command::new("bash");
    for (key, value) in env {
        cmd.env(key, value);
    }
    // start.sh's PID goes to start.pid first, for the watchdog (see spawn_watchdog).
    cmd.arg("-c")
        .arg(r#"echo $$ > "$RMQ_RUN/start.pid"; exec bash "$0""#)
        .arg(scripts.join("start.sh"))
        .env("RMQ_RUN", run)
        .env("NAMESRV_PORT", ns_port.to_string())
        .env("BROKER_PORT", broker_port.to_string())
        .env("COMMITLOG_MB", COMMITLOG_MB)
        .env(
            "BROKER_EXTRA",
            format!("{TEST_BROKER_PROPERTIES}{extra_properties}\n"),
        )
        // start.sh would register the broker with an inherited NAMESRV_ADDR (e.g. the one the
        // rocketmq-rust tests use) instead of the NameServer it starts.
        .env_remove("NAMESRV_ADDR")
        .env_remove("BROKER_NAME");
    if std::env::var_os("BROKER_HEAP").is_none() {
        cmd.env("BROKER_HEAP", DEFAULT_BROKER_HEAP);
    }
    let done = run_with_deadline(cmd, "java-rocketmq/start.sh", START_LIMIT)
        .map_err(|e| format!("{e}\n{}", log_tails(run)))?;
    let value = |key: &str| {
        done.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
    };
    let (Some(namesrv), Some(broker), true) = (
        value("NAMESRV_ADDR"),
        value("BROKER_ADDR"),
        done.status.success(),
    ) else {
        return Err(format!(
            "java-rocketmq/start.sh (NameServer 127.0.0.1:{ns_port}, broker \
             127.0.0.1:{broker_port}, RMQ_RUN={}, deleted at exit unless \
             JAVA_ROCKETMQ_KEEP_RUN=1) did not report a registered broker ({}).\n\
             stdout:\n{}\nstderr:\n{}\n{}",
            run.display(),
            done.status,
            done.stdout,
            done.stderr,
            log_tails(run)
        ));
    };
    let pids: Vec<String> = ["namesrv", "broker"]
        .iter()
        .filter_map(|n| std::fs::read_to_string(run.join(format!("{n}.pid"))).ok())
        .map(|p| p.trim().to_owned())
        .collect();
    eprintln!(
        "java-rocketmq: NameServer {namesrv} + broker {broker} up in {:.1} s (PIDs {}, RMQ_RUN={})",
        started.elapsed().as_secs_f64(),
        pids.join(" "),
        run.display()
    );
    Ok(JavaServers {
        namesrv,
        brokers: vec![broker],
        run_dir: Some(run.to_owned()),
    })
}

/// Stops the JVMs of `run` and wipes its store now (after a failed start; the watchdog deletes
/// the dir at exit).
fn stop_now(scripts: &Path, run: &Path) {
    let mut cmd = Command::new("bash");
    cmd.arg(scripts.join("stop.sh"))
        .arg("--wipe")
        .env("RMQ_RUN", run);
    if let Err(e) = run_with_deadline(cmd, "java-rocketmq/stop.sh", STOP_LIMIT) {
        eprintln!("java-rocketmq: {e}");
    }
}

/// The last lines of the servers' console logs in `run`.
fn log_tails(run: &Path) -> String {
    let mut out = String::new();
    for log in ["logs/namesrv.out", "logs/broker.out"] {
        let text = std::fs::read_to_string(run.join(log)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        out.push_str(&format!(
            "--- {}/{log} (last 30 lines):\n{tail}\n",
            run.display()
        ));
    }
    out
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` in its own process group with captured output; kills the group after `limit`.
fn run_with_deadline(mut cmd: Command, what: &str, limit: Duration) -> Result<Finished, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    let stdout = collect(child.stdout.take().expect("piped stdout"));
    let stderr = collect(child.stderr.take().expect("piped stderr"));
    let text = |buf: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    };
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("{what}: wait: {e}")),
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            return Err(format!(
                "{what}: no result within {} s (killed).\nstdout:\n{}\nstderr:\n{}",
                limit.as_secs(),
                text(&stdout.0),
                text(&stderr.0)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The pipes close when the last holder exits; the JVMs write to their own files.
    let grace = Instant::now() + Duration::from_secs(5);
    while !(stdout.1.is_finished() && stderr.1.is_finished()) && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Finished {
        status,
        stdout: text(&stdout.0),
        stderr: text(&stderr.0),
    })
}

type Collected = (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>);

/// Reads `from` to its end on a thread, into a buffer readable at any time.
fn collect(mut from: impl Read + Send + 'static) -> Collected {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buf);
    let handle = std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&chunk[..n]);
        }
    });
    (buf, handle)
}
