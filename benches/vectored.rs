//! Copy-into-one-buffer vs vectored write (`writev`) for a frame = small header + large body, on a
//! loopback TCP socket drained by another thread. glommio's TcpStream has no vectored write, so the
//! engine copies bodies into the connection's buffer; this measures what a raw `writev` would save.
//! Baseline: the `copy` rows.

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn connected_pair() -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    });
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn write_all_vectored(s: &mut TcpStream, mut parts: [&[u8]; 2]) {
    while !parts[0].is_empty() || !parts[1].is_empty() {
        let slices = [IoSlice::new(parts[0]), IoSlice::new(parts[1])];
        let mut n = s.write_vectored(&slices).unwrap();
        let first = n.min(parts[0].len());
        parts[0] = &parts[0][first..];
        n -= first;
        parts[1] = &parts[1][n..];
    }
}

fn frames(c: &mut Criterion) {
    let header = vec![7u8; 180];
    let mut g = c.benchmark_group("frame_write");
    for size in [1024usize, 64 * 1024, 1024 * 1024] {
        let body = vec![1u8; size];
        g.throughput(Throughput::Bytes((size + header.len()) as u64));
        let mut s = connected_pair();
        let mut buf = Vec::with_capacity(size + 256);
        g.bench_with_input(BenchmarkId::new("copy", size), &size, |b, _| {
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(&header);
                buf.extend_from_slice(&body);
                s.write_all(&buf).unwrap();
            })
        });
        let mut s = connected_pair();
        g.bench_with_input(BenchmarkId::new("writev", size), &size, |b, _| {
            b.iter(|| write_all_vectored(&mut s, [&header, &body]))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = frames
}
criterion_main!(benches);
