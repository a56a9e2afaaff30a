//! A null broker for measuring producers (`loadgen --sink`, the engine benches, and the
//! `null-broker` binary for other clients, e.g. the Java benchmark Producer).
//!
//! One loopback port answers as NameServer (a route with one broker, itself) and as broker (acks
//! every send at once, stores nothing). It runs on its own pinned glommio executor. It is a
//! measuring aid only: correctness is proven against the real broker. It lives outside the
//! `rocketmq-tpc` library (it is no part of a producer's API) and speaks through its public
//! protocol module.
//!
//! ```no_run
//! let sink = null_broker::NullBroker::start(1, 8).unwrap();
//! println!("namesrv = {}", sink.addr());
//! ```

pub mod measure;

use std::cell::Cell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

use rocketmq_tpc::protocol::command::{HeaderEncoding, FLAG_RESPONSE};
use rocketmq_tpc::protocol::ext_fields::NoHeader;
use rocketmq_tpc::protocol::frame::{self, MAX_FRAME_BYTES};
use rocketmq_tpc::protocol::header_json::CommandHead;
use rocketmq_tpc::protocol::send_response_header::{SendMessageResponseHeader, DEFAULT_REGION};
use rocketmq_tpc::protocol::{LanguageCode, RemotingCommand};
use rocketmq_tpc::Error;

/// A running null broker; stops when dropped.
pub struct NullBroker {
    addr: String,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    join: Option<glommio::ExecutorJoinHandle<()>>,
}

impl NullBroker {
    /// Starts the sink on `cpu` with `queues` write queues, on a free loopback port.
    ///
    /// # Errors
    ///
    /// [`Error::Startup`] when the executor or the listener cannot start.
    pub fn start(cpu: usize, queues: u32) -> Result<NullBroker, Error> {
        Self::start_on(cpu, queues, "127.0.0.1:0")
    }

    /// Like [`NullBroker::start`], listening on `listen` (`host:port`; port 0 for a free one).
    ///
    /// # Errors
    ///
    /// [`Error::Startup`] when the executor or the listener cannot start.
    pub fn start_on(cpu: usize, queues: u32, listen: &str) -> Result<NullBroker, Error> {
        let listen = listen.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let join = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name("rmq-sink")
            .io_memory(rocketmq_tpc::internals::DEFAULT_IO_MEMORY)
            .spawn(move || async move {
                let listener = match TcpListener::bind(listen.as_str()) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let addr = listener.local_addr().map(|a| a.to_string());
                let _ = tx.send(addr.map_err(|e| e.to_string()));
                let addr = Rc::new(
                    listener
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                );
                let counter = Rc::new(Cell::new(0u64));
                while !stop2.load(Ordering::Relaxed) {
                    let accepted =
                        futures_lite::future::or(async { Some(listener.accept().await) }, async {
                            glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
                            None
                        })
                        .await;
                    if let Some(Ok(stream)) = accepted {
                        let _ = stream.set_nodelay(true);
                        glommio::spawn_local(serve(
                            stream,
                            addr.clone(),
                            queues,
                            counter.clone(),
                            acked2.clone(),
                            stop2.clone(),
                        ))
                        .detach();
                    }
                }
            })
            .map_err(|e| Error::Startup {
                reason: format!("sink on CPU {cpu}: {e}"),
            })?;
        let addr = rx
            .recv()
            .map_err(|_| Error::Startup {
                reason: "sink executor stopped".into(),
            })?
            .map_err(|reason| Error::Startup { reason })?;
        Ok(NullBroker {
            addr,
            stop,
            acked,
            join: Some(join),
        })
    }

    /// `ip:port`, to be used as the NameServer address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Messages acked so far (a batch counts each message).
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
}

impl Drop for NullBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    addr: Rc<String>,
    queues: u32,
    offset: Rc<Cell<u64>>,
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut input = BytesMut::with_capacity(256 * 1024);
    let mut output = BytesMut::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut local_acked = 0u64;
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        input.extend_from_slice(&chunk[..n]);
        loop {
            match frame::decode(&mut input, MAX_FRAME_BYTES) {
                Ok(Some(request)) => {
                    local_acked += answer(&request, &addr, queues, &offset, &mut output);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if !output.is_empty() {
            if stream.write_all(&output).await.is_err() {
                break;
            }
            output.clear();
        }
        // Once per read (hundreds of answers under load): the count is exact whenever the
        // connection is quiet.
        if local_acked > 0 {
            acked.fetch_add(local_acked, Ordering::Relaxed);
            local_acked = 0;
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    acked.fetch_add(local_acked, Ordering::Relaxed);
}

/// Appends the answer to `request`; returns how many messages it acked.
fn answer(
    request: &RemotingCommand,
    addr: &str,
    queues: u32,
    offset: &Cell<u64>,
    out: &mut BytesMut,
) -> u64 {
    let head = |code: i32| CommandHead {
        code,
        language: LanguageCode::JAVA,
        version: rocketmq_tpc::internals::DEFAULT_VERSION,
        opaque: request.opaque,
        flag: FLAG_RESPONSE,
        remark: None,
    };
    match request.code {
        105 => {
            let route = format!(
                r#"{{"queueDatas":[{{"brokerName":"sink","readQueueNums":{queues},"writeQueueNums":{queues},"perm":6,"topicSysFlag":0}}],"brokerDatas":[{{"cluster":"sink","brokerName":"sink","brokerAddrs":{{"0":"{addr}"}}}}]}}"#
            );
            let _ = frame::encode(
                out,
                HeaderEncoding::Json,
                &head(0),
                &NoHeader,
                route.as_bytes(),
                MAX_FRAME_BYTES,
            );
            0
        }
        310 | 320 | 10 => {
            let count = if request.code == 320 {
                count_batch_records(&request.body)
            } else {
                1
            };
            let first = offset.get();
            offset.set(first + count);
            if request.is_oneway() {
                return count;
            }
            let queue_id = request
                .ext("e")
                .or_else(|| request.ext("queueId"))
                .and_then(|q| q.parse().ok())
                .unwrap_or(0);
            let mut msg_id = String::with_capacity(33 * count as usize);
            for i in 0..count {
                if i > 0 {
                    msg_id.push(',');
                }
                let _ = write!(msg_id, "7F00000100002A9F{:016X}", first + i);
            }
            let header = SendMessageResponseHeader {
                msg_id: &msg_id,
                queue_id,
                queue_offset: first as i64,
                transaction_id: None,
                region_id: DEFAULT_REGION,
                trace_on: false,
            };
            let _ = frame::encode(
                out,
                HeaderEncoding::Binary,
                &head(0),
                &header,
                &[],
                MAX_FRAME_BYTES,
            );
            count
        }
        _ if request.is_oneway() => 0,
        _ => {
            let _ = frame::encode(
                out,
                HeaderEncoding::Binary,
                &head(0),
                &NoHeader,
                &[],
                MAX_FRAME_BYTES,
            );
            0
        }
    }
}

fn count_batch_records(body: &[u8]) -> u64 {
    let mut pos = 0usize;
    let mut count = 0;
    while pos + 4 <= body.len() {
        let size =
            u32::from_be_bytes([body[pos], body[pos + 1], body[pos + 2], body[pos + 3]]) as usize;
        if size == 0 {
            break;
        }
        pos += size;
        count += 1;
    }
    count.max(1)
}
