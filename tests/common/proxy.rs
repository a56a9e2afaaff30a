//! A fault-injecting TCP proxy between the producer and a real NameServer or broker (test
//! support). Requests pass through untouched; each response frame goes through the script.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::BytesMut;
use rocketmq_tpc::protocol::frame;

/// What happens to one response frame (numbered from 0 over the proxy's lifetime).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward it.
    Pass,
    /// Forward it after a pause (the responses after it go on meanwhile).
    Delay(Duration),
    /// Forward it twice.
    Duplicate,
    /// Hold it and forward it after the next response (reordering).
    HoldForNext,
    /// Drop it (never answered).
    Drop,
    /// Send only its first half, then reset the connection.
    TruncateAndReset,
    /// Reset the connection instead of forwarding it.
    Reset,
    /// Forward it with a corrupted length prefix (then the stream is garbage).
    CorruptLength,
}

/// A running proxy; lives until the test process ends.
pub struct Proxy {
    pub addr: String,
    pub responses: Arc<AtomicU64>,
}

/// A NameServer proxy whose routes point at a fault-injecting proxy in front of the broker.
pub struct FaultyCluster {
    /// Give this to the producer as its NameServer.
    pub namesrv: String,
    /// The proxy in front of the broker.
    pub broker: Proxy,
}

impl FaultyCluster {
    /// Faults `script` on the broker's responses; the NameServer is passed through, its route
    /// bodies rewritten so the producer connects to the broker proxy.
    pub fn start(
        namesrv: &str,
        broker: &str,
        script: impl Fn(u64) -> Fault + Send + Sync + 'static,
    ) -> FaultyCluster {
        let broker_proxy = Proxy::start(broker, None, script);
        let ns = Proxy::start(
            namesrv,
            Some((broker.to_owned(), broker_proxy.addr.clone())),
            |_| Fault::Pass,
        );
        FaultyCluster {
            namesrv: ns.addr,
            broker: broker_proxy,
        }
    }
}

impl Proxy {
    /// Proxies to `upstream`, applying `script(response_index)` to every response frame and
    /// replacing `rewrite.0` by `rewrite.1` in response bodies.
    pub fn start(
        upstream: &str,
        rewrite: Option<(String, String)>,
        script: impl Fn(u64) -> Fault + Send + Sync + 'static,
    ) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let responses = Arc::new(AtomicU64::new(0));
        let script = Arc::new(script);
        let (upstream, counter) = (upstream.to_owned(), responses.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || pump_requests(c2, s2));
                let (script, counter, rewrite) = (script.clone(), counter.clone(), rewrite.clone());
                thread::spawn(move || pump_responses(server, client, &*script, &counter, rewrite));
            }
        });
        Proxy { addr, responses }
    }
}

fn pump_requests(mut client: TcpStream, mut server: TcpStream) {
    let mut buf = [0u8; 65536];
    loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if server.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = server.shutdown(Shutdown::Both);
}

fn pump_responses(
    mut server: TcpStream,
    client: TcpStream,
    script: &(dyn Fn(u64) -> Fault + Send + Sync),
    counter: &AtomicU64,
    rewrite: Option<(String, String)>,
) {
    let client = Arc::new(Mutex::new(client));
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 65536];
    let mut held: Option<Vec<u8>> = None;
    let reset = |c: &Mutex<TcpStream>| {
        let c = c.lock().unwrap();
        let _ = socket_reset(&c);
    };
    loop {
        let total = match frame::check(&buf, frame::MAX_FRAME_BYTES) {
            Ok(total) => total,
            Err(rocketmq_tpc::protocol::DecodeError::Incomplete { .. }) => {
                match server.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        continue;
                    }
                }
            }
            Err(_) => break,
        };
        let mut frame_bytes = buf.split_to(total).to_vec();
        if let Some((from, to)) = &rewrite {
            frame_bytes = rewrite_body(&frame_bytes, from, to);
        }
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let fault = script(n);
        let write = |bytes: &[u8]| client.lock().unwrap().write_all(bytes).is_ok();
        let ok = match fault.clone() {
            Fault::Pass => write(&frame_bytes),
            Fault::Delay(pause) => {
                // Late on its own: the responses after it are not held up behind it.
                let client = client.clone();
                thread::spawn(move || {
                    thread::sleep(pause);
                    let _ = client.lock().unwrap().write_all(&frame_bytes);
                });
                true
            }
            Fault::Duplicate => write(&frame_bytes) && write(&frame_bytes),
            Fault::HoldForNext => {
                if let Some(previous) = held.replace(frame_bytes) {
                    write(&previous)
                } else {
                    true
                }
            }
            Fault::Drop => true,
            Fault::TruncateAndReset => {
                write(&frame_bytes[..frame_bytes.len() / 2]);
                reset(&client);
                false
            }
            Fault::Reset => {
                reset(&client);
                false
            }
            Fault::CorruptLength => {
                let mut bad = frame_bytes.clone();
                bad[0] = 0x7f;
                write(&bad)
            }
        };
        if !ok {
            break;
        }
        if !matches!(fault, Fault::HoldForNext) {
            if let Some(previous) = held.take() {
                if !write(&previous) {
                    break;
                }
            }
        }
    }
    let _ = client.lock().unwrap().shutdown(Shutdown::Both);
}

/// Closes with RST (SO_LINGER 0) instead of FIN.
fn socket_reset(stream: &TcpStream) -> std::io::Result<()> {
    socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO))?;
    stream.shutdown(Shutdown::Both)
}

/// Replaces `from` by `to` in a frame's body and fixes the length prefix.
fn rewrite_body(frame_bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let header_len =
        (u32::from_be_bytes(frame_bytes[4..8].try_into().unwrap()) & 0xFF_FFFF) as usize;
    let body = &frame_bytes[8 + header_len..];
    let Ok(text) = std::str::from_utf8(body) else {
        return frame_bytes.to_vec();
    };
    if !text.contains(from) {
        return frame_bytes.to_vec();
    }
    let new_body = text.replace(from, to);
    let mut out = Vec::with_capacity(frame_bytes.len() + 16);
    out.extend_from_slice(&((4 + header_len + new_body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&frame_bytes[4..8 + header_len]);
    out.extend_from_slice(new_body.as_bytes());
    out
}
