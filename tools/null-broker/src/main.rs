//! `null-broker`: the null broker as a process, so that any client (the Java benchmark Producer,
//! another Rust client, loadgen itself) can be measured against exactly the same peer.
//!
//! ```text
//! null-broker [--listen 127.0.0.1:PORT] [--cpu N] [--queues Q] [--seconds S]
//! ```
//!
//! Prints `NAMESRV_ADDR=host:port` once listening, then, when it stops (after `--seconds`, or
//! when its standard input closes), `ACKED=n`: the messages it acked.

use std::io::Read;
use std::time::Duration;

fn main() {
    if let Err(e) = run() {
        eprintln!("null-broker: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut cpu = None;
    let mut queues = 8u32;
    let mut seconds = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = value()?,
            "--cpu" => {
                cpu = Some(
                    value()?
                        .parse::<usize>()
                        .map_err(|e| format!("--cpu: {e}"))?,
                )
            }
            "--queues" => queues = value()?.parse().map_err(|e| format!("--queues: {e}"))?,
            "--seconds" => {
                seconds = Some(
                    value()?
                        .parse::<u64>()
                        .map_err(|e| format!("--seconds: {e}"))?,
                )
            }
            "-h" | "--help" => {
                println!(
                    "null-broker [--listen 127.0.0.1:PORT] [--cpu N] [--queues Q] [--seconds S]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if queues == 0 {
        return Err("--queues must be at least 1".into());
    }
    let cpu = match cpu {
        Some(cpu) => cpu,
        None => std::thread::available_parallelism()
            .map(|n| n.get() - 1)
            .unwrap_or(0),
    };
    let sink =
        null_broker::NullBroker::start_on(cpu, queues, &listen).map_err(|e| e.to_string())?;
    println!("NAMESRV_ADDR={}", sink.addr());
    match seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        // Until standard input closes (the parent ended or closed the pipe).
        None => {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
    }
    println!("ACKED={}", sink.acked());
    Ok(())
}
