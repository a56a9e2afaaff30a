//! A scriptable in-process NameServer + broker on one loopback port, for fault injection.
//! Never the only proof: every behaviour it fakes is also exercised against the real broker.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rocketmq_tpc::protocol::RemotingCommand;

/// What the fake does with one send request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer with this response code (0 = stored).
    Reply(i32),
    /// Answer after a pause.
    ReplyAfter(Duration, i32),
    /// Never answer.
    Ignore,
    /// Close the connection without answering.
    Close,
    /// Write these raw bytes instead of an answer.
    Garbage(Vec<u8>),
    /// Stop reading this connection (its socket buffers fill up) for 20 s, then close it.
    StopReading,
    /// Answer with `code`, this remark (instead of the usual "fake broker says ..."), and the
    /// usual `msgId` / `queueId` / `queueOffset` fields overridden by `fields` (a field set to
    /// `None` is left out).
    ReplyWith {
        code: i32,
        remark: Option<String>,
        fields: Vec<(&'static str, Option<String>)>,
    },
}

/// A route of one broker named `fake` at `addr` with 4 queues (what [`FakeBroker::start`] serves).
pub fn default_route(addr: &str) -> String {
    format!(
        r#"{{"queueDatas":[{{"brokerName":"fake","readQueueNums":4,"writeQueueNums":4,"perm":6,"topicSysFlag":0}}],"brokerDatas":[{{"cluster":"c","brokerName":"fake","brokerAddrs":{{0:"{addr}"}}}}]}}"#
    )
}

/// A script for [`FakeBroker::start`]: send request `n` (counted from 0) gets `special`, every
/// other one `otherwise`.
pub fn at(n: u64, special: Action, otherwise: Action) -> impl Fn(u64) -> Action + Send + Sync {
    move |i| {
        if i == n {
            special.clone()
        } else {
            otherwise.clone()
        }
    }
}

/// Route JSON served for every topic, given the fake's address.
pub type RouteFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A running fake; [`FakeBroker::stop`] (or dropping it) closes its port and every connection.
pub struct FakeBroker {
    pub addr: String,
    /// Send requests (codes 310 and 320) received.
    pub sends: Arc<AtomicU64>,
    /// Of those, the ones flagged oneway (never answered).
    pub oneway_sends: Arc<AtomicU64>,
    /// The properties (header field `i`) of each send request, in arrival order.
    pub sent_properties: Arc<std::sync::Mutex<Vec<String>>>,
    /// Requests by code (heartbeats are 34, unregisters 35, routes 105).
    pub requests: Arc<std::sync::Mutex<std::collections::BTreeMap<i32, u64>>>,
    /// Last heartbeat body.
    pub last_heartbeat: Arc<std::sync::Mutex<String>>,
    stopped: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<Arc<TcpStream>>>>,
}

impl FakeBroker {
    /// Starts a fake whose send handling is `script(send_index) -> Action`.
    pub fn start(script: impl Fn(u64) -> Action + Send + Sync + 'static) -> FakeBroker {
        Self::start_with_route(Arc::new(|addr: &str| default_route(addr)), script)
    }

    /// [`FakeBroker::start`] serving `route(addr)` as every topic's route.
    pub fn start_with_route(
        route: RouteFn,
        script: impl Fn(u64) -> Action + Send + Sync + 'static,
    ) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let sends = Arc::new(AtomicU64::new(0));
        let oneway_sends = Arc::new(AtomicU64::new(0));
        let sent_properties = Arc::new(std::sync::Mutex::new(Vec::new()));
        let requests = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let last_heartbeat = Arc::new(std::sync::Mutex::new(String::new()));
        let script = Arc::new(script);
        let shared = Shared {
            addr: addr.clone(),
            sends: sends.clone(),
            oneway_sends: oneway_sends.clone(),
            sent_properties: sent_properties.clone(),
            requests: requests.clone(),
            last_heartbeat: last_heartbeat.clone(),
            route,
        };
        let stopped = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop_flag, open) = (stopped.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                // One copy, shared with `stop`; it keeps the socket open, so a connection
                // `serve` leaves is shut down explicitly (the peer must see it close).
                let copy = stream.try_clone().ok().map(Arc::new);
                if let Some(copy) = &copy {
                    open.lock().unwrap().push(Arc::clone(copy));
                }
                let (shared, script) = (shared.clone(), script.clone());
                thread::spawn(move || {
                    serve(stream, &shared, &*script);
                    if let Some(copy) = copy {
                        let _ = copy.shutdown(std::net::Shutdown::Both);
                    }
                });
            }
        });
        FakeBroker {
            addr,
            sends,
            oneway_sends,
            sent_properties,
            requests,
            last_heartbeat,
            stopped,
            connections,
        }
    }

    /// Stops accepting and closes every connection (the producer sees the peer go away).
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wakes the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect(&self.addr);
        for stream in self.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn reply(
    stream: &mut TcpStream,
    request: &RemotingCommand,
    code: i32,
    fields: &[(&str, &str)],
    body: &[u8],
) {
    let mut cmd = RemotingCommand::response_to(request, code, 407);
    for (k, v) in fields {
        cmd.push_ext(*k, *v);
    }
    if code != 0 {
        cmd.remark = Some(format!("fake broker says {code}"));
    }
    cmd.body = body.to_vec().into();
    let _ = super::frames::write_command(stream, &cmd);
}

#[derive(Clone)]
struct Shared {
    addr: String,
    sends: Arc<AtomicU64>,
    oneway_sends: Arc<AtomicU64>,
    sent_properties: Arc<std::sync::Mutex<Vec<String>>>,
    requests: Arc<std::sync::Mutex<std::collections::BTreeMap<i32, u64>>>,
    last_heartbeat: Arc<std::sync::Mutex<String>>,
    route: RouteFn,
}

fn serve(mut stream: TcpStream, shared: &Shared, script: &(dyn Fn(u64) -> Action + Send + Sync)) {
    let (addr, sends) = (shared.addr.as_str(), &*shared.sends);
    let mut frames = super::frames::FrameReader::default();
    loop {
        let Ok(request) = frames.next(&mut stream) else {
            return;
        };
        *shared
            .requests
            .lock()
            .unwrap()
            .entry(request.code)
            .or_insert(0) += 1;
        if request.code == 34 {
            *shared.last_heartbeat.lock().unwrap() =
                String::from_utf8_lossy(&request.body).into_owned();
        }
        match request.code {
            105 => {
                let route = (shared.route)(addr);
                reply(&mut stream, &request, 0, &[], route.as_bytes());
            }
            310 | 320 => {
                if request.is_oneway() {
                    shared.oneway_sends.fetch_add(1, Ordering::SeqCst);
                }
                shared
                    .sent_properties
                    .lock()
                    .unwrap()
                    .push(request.ext("i").unwrap_or_default().to_owned());
                let n = sends.fetch_add(1, Ordering::SeqCst);
                // One offset id per message, comma-joined for a batch (as brokers answer).
                let records = match request.code {
                    320 => rocketmq_tpc::protocol::batch::decode(request.body.clone())
                        .map_or(1, |records| records.len().max(1)),
                    _ => 1,
                };
                let msg_id = (0..records)
                    .map(|i| format!("7F00000100002A9F{:016X}", n * 1000 + i as u64))
                    .collect::<Vec<_>>()
                    .join(",");
                let offset = n.to_string();
                let usual = [
                    ("msgId", msg_id),
                    ("queueId", request.ext("e").unwrap_or("0").to_owned()),
                    ("queueOffset", offset),
                ];
                let ok = |stream: &mut TcpStream, code: i32| {
                    let fields: Vec<(&str, &str)> =
                        usual.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    reply(stream, &request, code, &fields, &[])
                };
                match script(n) {
                    Action::Reply(code) => ok(&mut stream, code),
                    Action::ReplyAfter(pause, code) => {
                        thread::sleep(pause);
                        ok(&mut stream, code)
                    }
                    Action::Ignore => {}
                    Action::Close => return,
                    Action::Garbage(bytes) => {
                        let _ = stream.write_all(&bytes);
                    }
                    Action::StopReading => {
                        thread::sleep(Duration::from_secs(20));
                        return;
                    }
                    Action::ReplyWith {
                        code,
                        remark,
                        fields,
                    } => {
                        let mut cmd = RemotingCommand::response_to(&request, code, 407);
                        for (k, v) in &usual {
                            if !fields.iter().any(|(key, _)| key == k) {
                                cmd.push_ext(*k, v.as_str());
                            }
                        }
                        for (k, v) in &fields {
                            if let Some(v) = v {
                                cmd.push_ext(*k, v.as_str());
                            }
                        }
                        cmd.remark = remark;
                        let _ = super::frames::write_command(&mut stream, &cmd);
                    }
                }
            }
            _ if request.is_oneway() => {}
            _ => reply(&mut stream, &request, 0, &[], &[]),
        }
    }
}
