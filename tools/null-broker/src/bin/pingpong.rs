//! The latency floor of this machine: a blocking TCP round trip over loopback between two
//! threads pinned to two CPUs (or one), with a frame the size of a small send and its answer.
//!
//! `pingpong [--rounds N] [--bytes B] [--client-cpu C] [--server-cpu S] [--rate R]` prints one JSON
//! line with p50 / p99 / p999 / max in µs and the client thread's CPU per round (user + system,
//! the kernel's loopback work included). Producer latencies and CPU in `tuning.md` are reported
//! beside it: no producer can answer faster, or for less kernel CPU, than the machine moves one
//! request and one answer between CPUs. `--rate R` paces the rounds at R per second (sleeping
//! between them, as a lightly loaded producer would), else they run back to back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use null_broker::measure::{number_arg, pin, thread_cpu_s};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("pingpong [--rounds N] [--bytes B] [--client-cpu C] [--server-cpu S] [--rate R]");
        return;
    }
    let parsed = (|| {
        Ok::<_, String>((
            number_arg(&args, "--rounds", 20_000)?.max(1),
            number_arg(&args, "--bytes", 348)?.clamp(1, 1 << 20),
            number_arg(&args, "--client-cpu", 0)?,
            number_arg(&args, "--server-cpu", 1)?,
            number_arg(&args, "--rate", 0)?,
        ))
    })();
    let (rounds, bytes, client_cpu, server_cpu, rate) = match parsed {
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
    let paced_from = Instant::now();
    let mut cpu_from = 0.0;
    for round in 0..rounds + rounds / 10 {
        if round == rounds / 10 {
            cpu_from = thread_cpu_s();
        }
        if rate > 0 {
            let at = paced_from + Duration::from_secs_f64(round as f64 / rate as f64);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
        }
        let started = Instant::now();
        stream.write_all(&out).expect("write");
        stream.read_exact(&mut back).expect("read");
        // The first tenth warms up caches and the scheduler; it is not counted.
        if round >= rounds / 10 {
            micros.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    let cpu_us_per_round = (thread_cpu_s() - cpu_from) * 1e6 / micros.len() as f64;
    drop(stream);
    let _ = server.join();
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
    println!(
        "{{\"rounds\":{},\"bytes\":{bytes},\"client_cpu\":{client_cpu},\"server_cpu\":{server_cpu},\"rate\":{rate},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"client_cpu_us_per_round\":{cpu_us_per_round:.1}}}",
        micros.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        micros[micros.len() - 1]
    );
}
