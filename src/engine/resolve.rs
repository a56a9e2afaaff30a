//! Host names to addresses, off the core: a producer core never blocks in `getaddrinfo`.
//!
//! ```text
//!  "ip:port" ─► parsed, no lookup
//!  "name:port" ─► resolver on a helper thread ─► every address, within the attempt's deadline
//! ```

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use super::deadline::until;

/// Turns a host name and port into addresses. It runs on a helper thread (never on a producer
/// core), so it may block; the connect that asked gives up at its deadline either way.
pub type Resolver = Arc<dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// The system resolver (`getaddrinfo`).
pub(crate) fn system_resolver() -> Resolver {
    Arc::new(|host: &str, port: u16| Ok((host, port).to_socket_addrs()?.collect()))
}

/// Every address of `host`, or why there is none by `deadline`.
pub(crate) async fn resolve(
    resolver: &Resolver,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = futures_channel::oneshot::channel();
    let resolver = Arc::clone(resolver);
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("rmq-tpc-resolve".into())
        .spawn(move || {
            let _ = tx.send(resolver(&name, port));
        })
        .map_err(|e| format!("cannot start a resolver thread: {e}"))?;
    match until(deadline, rx).await {
        None => Err(format!("resolving {host} took longer than the time left")),
        Some(Err(_)) => Err(format!("the resolver of {host} panicked")),
        Some(Ok(Err(e))) => Err(format!("cannot resolve {host}: {e}")),
        Some(Ok(Ok(addrs))) if addrs.is_empty() => Err(format!("{host} resolves to nothing")),
        Some(Ok(Ok(addrs))) => Ok(addrs),
    }
}
