//! Sans-IO protocol costs. Baseline: the previous run of the same bench (criterion keeps it);
//! the Java client's per-message CPU (≈15 µs, issue 4) is the outside reference.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rocketmq_tpc::protocol::command::{HeaderEncoding, LanguageCode, FLAG_RESPONSE};
use rocketmq_tpc::protocol::compression::{self, Compressor};
use rocketmq_tpc::protocol::frame::{self, MAX_FRAME_BYTES};
use rocketmq_tpc::protocol::header_json::CommandHead;
use rocketmq_tpc::protocol::message_id::UniqueIdGenerator;
use rocketmq_tpc::protocol::send_request_header::{self, SendMessageRequestHeaderV2};
use rocketmq_tpc::protocol::send_response_header::{SendMessageResponseHeader, SendResponse};
use rocketmq_tpc::protocol::{batch, properties, route_data};

fn send_header() -> SendMessageRequestHeaderV2<'static> {
    SendMessageRequestHeaderV2 {
        producer_group: "loadgen",
        topic: "BenchTopic",
        default_topic: "TBW102",
        default_topic_queue_nums: 4,
        queue_id: 3,
        sys_flag: 0,
        born_timestamp: 1_764_000_000_000,
        flag: 0,
        properties: "WAIT\u{1}true\u{2}UNIQ_KEY\u{1}7F0000010D2212345678000003E80000",
        reconsume_times: 0,
        unit_mode: false,
        max_reconsume_times: None,
        batch: false,
        broker_name: Some("broker-a"),
        constant_fields: None,
    }
}

fn head(code: i32, flag: i32) -> CommandHead<'static> {
    CommandHead {
        code,
        language: LanguageCode::JAVA,
        version: 407,
        opaque: 42,
        flag,
        remark: None,
    }
}

fn response_frame(encoding: HeaderEncoding) -> BytesMut {
    let header = SendMessageResponseHeader {
        msg_id: "7F00000100002A9F0000000000001234",
        queue_id: 3,
        // A queue of a busy topic: its fields take more than 127 bytes, so the ext-fields
        // length has a byte above 0x7F, as most real answers have.
        queue_offset: 12_345_678,
        transaction_id: None,
        region_id: "DefaultRegion",
        trace_on: false,
    };
    let mut out = BytesMut::new();
    frame::encode(
        &mut out,
        encoding,
        &head(0, FLAG_RESPONSE),
        &header,
        &[],
        MAX_FRAME_BYTES,
    )
    .unwrap();
    out
}

fn headers(c: &mut Criterion) {
    let mut g = c.benchmark_group("send_request_encode");
    let body = [b'x'; 128];
    for encoding in [HeaderEncoding::Binary, HeaderEncoding::Json] {
        let mut out = BytesMut::with_capacity(1 << 20);
        g.bench_function(format!("{encoding:?}"), |b| {
            b.iter(|| {
                if out.len() > (1 << 19) {
                    out.clear();
                }
                frame::encode(
                    &mut out,
                    encoding,
                    &head(310, 0),
                    &send_header(),
                    &body,
                    MAX_FRAME_BYTES,
                )
                .unwrap();
            })
        });
    }
    // What the send path encodes: `a`–`d` pre-encoded once per route.
    let constant = send_request_header::constant_fields("loadgen", "BenchTopic", "TBW102", 4);
    let header = SendMessageRequestHeaderV2 {
        constant_fields: Some(&constant),
        ..send_header()
    };
    let mut out = BytesMut::with_capacity(1 << 20);
    g.bench_function("Binary_constant_fields", |b| {
        b.iter(|| {
            if out.len() > (1 << 19) {
                out.clear();
            }
            frame::encode(
                &mut out,
                HeaderEncoding::Binary,
                &head(310, 0),
                &header,
                &body,
                MAX_FRAME_BYTES,
            )
            .unwrap();
        })
    });
    g.finish();
    let mut g = c.benchmark_group("send_response_decode");
    for encoding in [HeaderEncoding::Binary, HeaderEncoding::Json] {
        let frame_bytes = response_frame(encoding);
        g.bench_function(format!("{encoding:?}"), |b| {
            b.iter(|| {
                let mut buf = frame_bytes.clone();
                let cmd = frame::decode(&mut buf, MAX_FRAME_BYTES).unwrap().unwrap();
                black_box(SendMessageResponseHeader::from_command(&cmd).unwrap());
            })
        });
    }
    // What a send record's answer costs: read where it lies, no decoded command.
    let frame_bytes = response_frame(HeaderEncoding::Binary);
    g.bench_function("Binary_in_place", |b| {
        b.iter(|| {
            let (_, response) = SendResponse::read_frame(black_box(&frame_bytes)).unwrap();
            black_box(response.fields.header().unwrap());
        })
    });
    g.finish();
}

fn bodies(c: &mut Criterion) {
    let mut g = c.benchmark_group("properties_encode");
    g.bench_function("tags_keys_wait_uniq", |b| {
        b.iter(|| {
            black_box(properties::encode([
                ("TAGS", "tag"),
                ("KEYS", "order-42"),
                ("WAIT", "true"),
                ("UNIQ_KEY", "7F0000010D2212345678000003E80000"),
            ]))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("batch_encode_64x128B");
    let bodies: Vec<Bytes> = (0..64).map(|i| Bytes::from(vec![i as u8; 128])).collect();
    let props = "WAIT\u{1}true\u{2}UNIQ_KEY\u{1}7F0000010D2212345678000003E80000";
    g.throughput(Throughput::Elements(64));
    g.bench_function("plain", |b| {
        let mut out = BytesMut::with_capacity(64 * 256);
        b.iter(|| {
            out.clear();
            for body in &bodies {
                batch::encode_record(&mut out, 0, body, props);
            }
        })
    });
    g.bench_function("zlib_each_body", |b| {
        let mut out = BytesMut::with_capacity(64 * 256);
        let mut zlib = Compressor::new(compression::DEFAULT_LEVEL);
        b.iter(|| {
            out.clear();
            for body in &bodies {
                let packed = zlib.compress(body);
                batch::encode_record(&mut out, 0, &packed, props);
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("zlib_compress");
    for size in [128usize, 1024, 4096, 65536, 1 << 20] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8 ^ (i / 7) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        let mut zlib = Compressor::new(compression::DEFAULT_LEVEL);
        g.bench_with_input(BenchmarkId::new("reused", size), &body, |b, body| {
            b.iter(|| black_box(zlib.compress(body)))
        });
        if size <= 4096 {
            g.bench_with_input(BenchmarkId::new("fresh", size), &body, |b, body| {
                b.iter(|| black_box(compression::compress(body, compression::DEFAULT_LEVEL)))
            });
        }
    }
    g.finish();
}

/// zlib vs LZ4 vs ZSTD (level 5) on JSON-like text and random bytes at 1, 4 and 64 KiB: time per
/// body (so CPU per MiB) from criterion, compression ratio printed once per case. Baseline: zlib.
fn compression_types(c: &mut Criterion) {
    use compression::CompressionType;
    let text = |len: usize| -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 96);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(
                format!(
                    "{{\"order\":{i},\"customer\":\"c-{}\",\"amount\":{}.{:02},\"status\":\"{}\"}}\n",
                    i * 7919 % 10_007,
                    i * 31 % 1000,
                    i % 100,
                    ["created", "paid", "shipped", "delivered"][(i % 4) as usize]
                )
                .as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    };
    let random = |len: usize| -> Vec<u8> {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    };
    let mut g = c.benchmark_group("compression_types");
    for (content, make) in [
        ("text", &text as &dyn Fn(usize) -> Vec<u8>),
        ("random", &random),
    ] {
        for size in [1024usize, 4096, 65536] {
            let body = make(size);
            g.throughput(Throughput::Bytes(size as u64));
            for kind in [
                CompressionType::Zlib,
                CompressionType::Lz4,
                CompressionType::Zstd,
            ] {
                let packed = compression::compress_as(kind, &body, compression::DEFAULT_LEVEL);
                eprintln!(
                    "ratio {content} {size} {}: {:.3} ({} -> {} bytes)",
                    kind.name(),
                    packed.len() as f64 / size as f64,
                    size,
                    packed.len()
                );
                let id = BenchmarkId::new(format!("{content}/{}", kind.name()), size);
                g.bench_with_input(id, &body, |b, body| {
                    b.iter(|| {
                        black_box(compression::compress_as(
                            kind,
                            body,
                            compression::DEFAULT_LEVEL,
                        ))
                    })
                });
            }
        }
    }
    g.finish();
}

fn ids_and_routes(c: &mut Criterion) {
    let mut gen = UniqueIdGenerator::new("10.0.0.1".parse().unwrap(), 1234, 0x1234_5678);
    c.bench_function("unique_id", |b| {
        b.iter(|| black_box(gen.next_id(1_764_000_000_000)))
    });
    let standard = br#"{"orderTopicConf":null,"queueDatas":[{"brokerName":"broker-a","readQueueNums":8,"writeQueueNums":8,"perm":6,"topicSysFlag":0},{"brokerName":"broker-b","readQueueNums":8,"writeQueueNums":8,"perm":6,"topicSysFlag":0}],"brokerDatas":[{"cluster":"c","brokerName":"broker-a","brokerAddrs":{"0":"127.0.0.1:10911"}},{"cluster":"c","brokerName":"broker-b","brokerAddrs":{"0":"127.0.0.1:10921"}}]}"#;
    let legacy = String::from_utf8_lossy(standard).replace("{\"0\":", "{0:");
    let mut g = c.benchmark_group("route_json_parse");
    g.bench_function("quoted_keys", |b| {
        b.iter(|| black_box(route_data::parse(standard).unwrap()))
    });
    g.bench_function("bare_keys", |b| {
        b.iter(|| black_box(route_data::parse(legacy.as_bytes()).unwrap()))
    });
    g.finish();
    let table = rocketmq_tpc::route::RouteTable::new();
    for i in 0..100 {
        table.update(
            &format!("topic{i}"),
            rocketmq_tpc::route::publish_queues::from_route(route_data::parse(standard).unwrap()),
        );
    }
    c.bench_function("route_snapshot_lookup", |b| {
        b.iter(|| black_box(table.get("topic42")))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = headers, bodies, compression_types, ids_and_routes
}
criterion_main!(benches);
