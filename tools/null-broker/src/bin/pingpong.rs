//! The latency floor of this machine: a blocking TCP round trip over loopback between two
//! threads pinned to two CPUs (or one), with a frame the size of a small send and its answer.
//!
//! `pingpong [--rounds N] [--bytes B] [--client-cpu C] [--server-cpu S]` prints one JSON line with
//! p50 / p99 / p999 / max in µs. Producer latencies in `tuning.md` are reported beside it: no
//! producer can answer faster than the machine moves one request and one answer between CPUs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn arg(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
    }
}

fn pin(cpu: usize) {
    // Best effort: an unpinned run still measures a round trip, only a noisier one.
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("pingpong [--rounds N] [--bytes B] [--client-cpu C] [--server-cpu S]");
        return;
    }
    let parsed = (|| {
        Ok::<_, String>((
            arg(&args, "--rounds", 20_000)?.max(1),
            arg(&args, "--bytes", 348)?.clamp(1, 1 << 20),
            arg(&args, "--client-cpu", 0)?,
            arg(&args, "--server-cpu", 1)?,
        ))
    })();
    let (rounds, bytes, client_cpu, server_cpu) = match parsed {
        Ok(v) => v,
        Err(e) => {
            eprintln!("pingpong: {e}");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let server = std::thread::spawn(move || {
        pin(server_cpu);
        let (mut stream, _) = listener.accept().expect("accept");
        let _ = stream.set_nodelay(true);
        let mut buf = vec![0u8; bytes];
        while stream.read_exact(&mut buf).is_ok() {
            if stream.write_all(&buf).is_err() {
                break;
            }
        }
    });
    pin(client_cpu);
    let mut stream = TcpStream::connect(addr).expect("connect");
    let _ = stream.set_nodelay(true);
    let out = vec![7u8; bytes];
    let mut back = vec![0u8; bytes];
    let mut micros = Vec::with_capacity(rounds);
    for round in 0..rounds + rounds / 10 {
        let started = Instant::now();
        stream.write_all(&out).expect("write");
        stream.read_exact(&mut back).expect("read");
        // The first tenth warms up caches and the scheduler; it is not counted.
        if round >= rounds / 10 {
            micros.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(stream);
    let _ = server.join();
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
    println!(
        "{{\"rounds\":{},\"bytes\":{bytes},\"client_cpu\":{client_cpu},\"server_cpu\":{server_cpu},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}}}",
        micros.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        micros[micros.len() - 1]
    );
}
