//! Against Apache RocketMQ 4.9.7, the Java reference NameServer and broker: what rocketmq-tpc sends
//! is acked and stored as sent by the servers every RocketMQ client is written against, not only
//! by the rocketmq-rust ones of `tests/real_broker.rs`.
//!
//! A separate target behind the `java-broker-tests` feature, so `cargo test --workspace` does not
//! run it (it needs `../shared/java-rocketmq`). Run it with
//!
//! ```sh
//! cargo test --features java-broker-tests --test java_broker
//! ```
//!
//! The servers are built (once, about a minute) and started by `tests/common/java_servers.rs`
//! from `../shared/java-rocketmq` (or `$ROCKETMQ_SHARED/java-rocketmq`), and stopped and wiped
//! when the test process exits; `JAVA_NAMESRV_ADDR` + `JAVA_BROKER_ADDRS` use running ones instead.
//! Read-back is the same as for the rocketmq-rust broker (`tests/common/read_back.rs`:
//! GET_MAX_OFFSET + PULL_MESSAGE with JSON headers, which the Java broker answers in JSON).

mod common;

use std::time::Duration;

use common::java_servers::java_rocketmq;
use common::parity::Cluster;
use common::read_back::{assert_stored_as_sent, Layout};
use common::{parity, topic, varied_messages};
use rocketmq_tpc::{LocalProducer, Message, Producer, SendStatus, ShortString};

/// A one-core producer on the Java NameServer.
fn producer(namesrv: &str) -> Producer {
    let mut builder = Producer::builder()
        .namesrv(namesrv)
        .producer_group("tpc_java_tests")
        .cores(1)
        // The first send creates the topic through TBW102 on a JVM that has barely warmed up,
        // possibly on a 2-core machine busy with other builds.
        .send_timeout(Duration::from_secs(10));
    builder.config_mut().core.spin_before_park = Duration::ZERO;
    builder.build().expect("producer starts")
}

#[test]
fn sync_sends_are_stored_as_sent_on_the_java_broker() {
    let servers = java_rocketmq();
    let topic = topic("sync");
    let producer = producer(&servers.namesrv);
    let sent: Vec<(Message, Option<ShortString>)> = varied_messages(&topic, 20, 300)
        .into_iter()
        .map(|m| {
            let r = producer
                .send(m.clone())
                .unwrap_or_else(|e| panic!("send to the Java broker: {e}"));
            assert_eq!(r.status, SendStatus::SendOk);
            assert_eq!(&*r.queue.topic, m.topic);
            (m, Some(r.msg_id))
        })
        .collect();
    let layout = Layout::of(&servers.namesrv, &servers.brokers, &topic);
    assert_stored_as_sent("sync sends to the Java broker", &layout, &topic, &sent);
}

/// Automatic batching (zero linger, so batches form from what is waiting on the core): every
/// message is stored as sent, batches and lone messages alike, with the id its caller was given.
#[test]
fn auto_batched_sends_are_stored_as_sent_on_the_java_broker() {
    let servers = java_rocketmq();
    let topic = topic("autobatch");
    let mut builder = Producer::builder()
        .namesrv(&servers.namesrv)
        .producer_group("tpc_java_autobatch")
        .cores(1)
        .send_timeout(Duration::from_secs(10));
    builder.config_mut().core.auto_batch = Some(rocketmq_tpc::AutoBatch::default());
    builder.config_mut().core.spin_before_park = Duration::ZERO;
    let producer = builder.build().expect("producer starts");
    // One sync send creates the topic (TBW102) before the burst.
    let mut messages = varied_messages(&topic, 200, 120).into_iter();
    let first = messages.next().expect("messages");
    let r = common::send_within(&producer, first.clone(), Duration::from_secs(60))
        .expect("the first send creates the topic");
    let mut sent = vec![(first, Some(r.msg_id))];
    let pending: Vec<_> = messages
        .map(|m| (m.clone(), producer.send_async(m)))
        .collect();
    let limit = Duration::from_secs(60);
    for (m, outcome) in common::wait_all_sent("auto-batched sends", limit, pending) {
        let r = outcome.unwrap_or_else(|e| panic!("auto-batched send to the Java broker: {e}"));
        assert_eq!(r.status, SendStatus::SendOk);
        sent.push((m, Some(r.msg_id)));
    }
    // On the core, plain messages are written straight into their batch (no prepared copy):
    // all at once from tasks, so that they batch.
    let on_core: Vec<Message> = varied_messages(&topic, 150, 90);
    let to_send = on_core.clone();
    let outcomes = common::on_core(&producer, 0, move |local: LocalProducer| async move {
        let tasks: Vec<_> = to_send
            .into_iter()
            .map(|m| {
                let local = local.clone();
                glommio::spawn_local(async move { local.send(m).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await);
        }
        outcomes
    })
    .expect("the core job ends");
    for (m, outcome) in on_core.into_iter().zip(outcomes) {
        let r = outcome.unwrap_or_else(|e| panic!("auto-batched send on the core: {e}"));
        assert_eq!(r.status, SendStatus::SendOk);
        sent.push((m, Some(r.msg_id)));
    }
    let layout = Layout::of(&servers.namesrv, &servers.brokers, &topic);
    assert_stored_as_sent(
        "auto-batched sends to the Java broker",
        &layout,
        &topic,
        &sent,
    );
    producer.shutdown(Duration::from_secs(5));
}

/// The Java servers as a parity cluster.
fn cluster() -> Cluster {
    let servers = java_rocketmq();
    Cluster {
        server: "Apache RocketMQ 4.9.7",
        namesrv: servers.namesrv.clone(),
        brokers: servers.brokers.clone(),
        checks_back_ended_transactions: false,
    }
}

#[test]
fn ordered_sends_by_key_keep_their_order_on_the_java_broker() {
    parity::ordered_by_key(&cluster());
}

#[test]
fn chosen_queue_selectors_and_bad_targets_on_the_java_broker() {
    parity::chosen_queue_and_selectors(&cluster());
}

#[test]
fn transactions_commit_rollback_and_check_back_on_the_java_broker() {
    parity::transactions(&cluster());
}

#[test]
fn request_reply_on_the_java_broker() {
    parity::request_reply(&cluster());
}

#[test]
fn delay_level_on_the_java_broker() {
    parity::delay_level(&cluster());
}

#[test]
fn namespace_on_the_java_broker() {
    parity::namespace(&cluster());
}

#[test]
fn hooks_on_the_java_broker() {
    parity::hooks(&cluster());
}

#[test]
fn panicking_hooks_on_the_java_broker() {
    parity::panicking_hooks(&cluster());
}

#[test]
fn flush_on_the_java_broker() {
    parity::flush(&cluster());
}

#[test]
fn vip_channel_on_the_java_broker() {
    parity::vip_channel(&cluster());
}

#[test]
fn lz4_and_zstd_on_the_java_broker() {
    parity::compression_types(&cluster());
}

/// What a Java 4.9.7 consumer (`DefaultLitePullConsumer`) reads of bodies this producer
/// compressed with zlib, LZ4 and ZSTD, singles and batches: each equal to what was sent (the Java
/// client decompresses by the sysFlag's type bits, 4.9.4+).
#[test]
fn a_java_consumer_reads_zlib_lz4_and_zstd_bodies_back() {
    use rocketmq_tpc::CompressionType;
    let servers = java_rocketmq();
    for kind in [
        CompressionType::Zlib,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ] {
        let topic = topic(&format!("javaread_{}", kind.name()));
        let mut config = Producer::builder()
            .namesrv(&servers.namesrv)
            .producer_group("tpc_java_read")
            .cores(1);
        config.config_mut().compress_type = kind;
        config.config_mut().compress_over = 256;
        let producer = config.build().unwrap();
        let sent = parity::send_single_and_batch(&producer, &topic, &format!("{kind:?}"));
        let read = common::java_consumer::read_bodies(
            &servers.namesrv,
            &topic,
            sent.len(),
            Duration::from_secs(60),
        );
        for (id, body) in &sent {
            let got = read.get(id).unwrap_or_else(|| {
                panic!("{kind:?}: {id} not read by the Java consumer: {read:?}")
            });
            assert_eq!(
                String::from_utf8_lossy(got),
                body.as_str(),
                "{kind:?}: the Java consumer's body of {id}"
            );
        }
        producer.shutdown(Duration::from_secs(5));
    }
}

#[test]
fn trace_on_the_java_broker() {
    parity::trace(&cluster());
}

/// Apache RocketMQ 4.9.7 has no timer messages (they are 5.x): it ignores the TIMER_* property
/// and delivers at once. The test says so instead of passing silently.
#[test]
fn timer_message_on_the_java_broker_is_delivered_at_once() {
    match parity::timer_message(&cluster()) {
        Ok(true) => {
            eprintln!("Apache RocketMQ 4.9.7: no timer store (5.x feature); delivered at once")
        }
        other => panic!(
            "Apache RocketMQ 4.9.7: expected the timer property to be ignored, got {other:?}"
        ),
    }
}

/// Accounts of the ACL test broker (Apache RocketMQ 4.9.7 `plain_acl.yml`).
const PLAIN_ACL: &str = "globalWhiteRemoteAddresses:
accounts:
- accessKey: tpcadmin
  secretKey: tpcadmin-secret
  whiteRemoteAddress:
  admin: true
- accessKey: tpclimited
  secretKey: tpclimited-secret
  whiteRemoteAddress:
  admin: false
  defaultTopicPerm: DENY
  defaultGroupPerm: PUB|SUB
  topicPerms:
  - TBW102=PUB|SUB
";

/// ACL signing (Java `AclClientRPCHook`) on a 4.9.7 broker with `aclEnable=true`: a signed
/// send is stored; a wrong secret and a topic without PUB permission are refused at once with
/// `AccessDenied` (one attempt each, no retry storm).
#[test]
fn acl_signed_sends_are_stored_and_refusals_are_typed_on_the_java_broker() {
    let servers = common::java_servers::start_extra_broker_cluster_with_files(
        "aclEnable=true",
        &[("home/conf/plain_acl.yml", PLAIN_ACL)],
    );
    let admin = rocketmq_tpc::AclCredentials::new("tpcadmin", "tpcadmin-secret");
    let producer_with = |creds: rocketmq_tpc::AclCredentials| {
        let mut builder = Producer::builder()
            .namesrv(&servers.namesrv)
            .producer_group("tpc_acl")
            .cores(1)
            .send_timeout(Duration::from_secs(10))
            .acl(creds);
        builder.config_mut().core.spin_before_park = Duration::ZERO;
        builder.build().unwrap()
    };
    let topic = topic("acl");
    let signed = producer_with(admin.clone());
    let mut stored = std::collections::BTreeMap::<i32, i64>::new();
    for i in 0..5 {
        let r = signed
            .send(Message::new(&topic, format!("signed {i}")))
            .unwrap_or_else(|e| panic!("a signed send: {e}"));
        *stored.entry(r.queue.queue_id).or_default() += 1;
    }
    for (queue, sent) in &stored {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let offset = parity::signed_max_offset(&servers.brokers[0], &admin, &topic, *queue);
            if offset >= *sent || std::time::Instant::now() > deadline {
                assert_eq!(offset, *sent, "queue {queue}: stored vs acked");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let wrong = producer_with(rocketmq_tpc::AclCredentials::new(
        "tpcadmin",
        "not-the-secret",
    ));
    let started = std::time::Instant::now();
    match wrong.send(Message::new(&topic, "wrong secret")) {
        Err(rocketmq_tpc::Error::AccessDenied { remark, .. }) => {
            assert!(
                remark.contains("signature") || remark.contains("Acl"),
                "{remark}"
            )
        }
        other => panic!("a wrong secret: expected AccessDenied, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once, not retried until the budget ran out"
    );
    let limited = producer_with(rocketmq_tpc::AclCredentials::new(
        "tpclimited",
        "tpclimited-secret",
    ));
    match limited.send(Message::new(&topic, "no PUB permission")) {
        Err(rocketmq_tpc::Error::AccessDenied { .. }) => {}
        other => panic!("a topic without PUB permission: expected AccessDenied, got {other:?}"),
    }
    let stats = wrong.stats().unwrap();
    assert_eq!(stats.retries(), 0, "AccessDenied is never retried");
}

/// A throw-away PKI made with openssl: a test CA and certificates it signs.
struct TestPki {
    dir: std::path::PathBuf,
}

impl TestPki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tpc-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = TestPki { dir };
        pki.self_signed("ca", "tpc-test-ca");
        pki
    }

    fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.join(file)
    }

    fn openssl(&self, args: &[&str]) {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (apt-get install openssl)");
        assert!(status.success(), "openssl {args:?}");
    }

    /// `NAME.pem` + `NAME.key`: a self-signed CA certificate with common name `cn`.
    fn self_signed(&self, name: &str, cn: &str) {
        let (pem, key, subj) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("/CN={cn}"),
        );
        self.openssl(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem,
            "-days", "30", "-subj", &subj,
        ]);
    }

    /// `NAME.pem` + `NAME.key` (+ `NAME.pk8`, the key as PKCS#8 for the Java servers): a leaf
    /// certificate signed by the test CA with extensions `ext` (e.g. `subjectAltName=IP:…`).
    fn issue(&self, name: &str, cn: &str, ext: &str) {
        self.issue_for_days(name, cn, ext, "30");
    }

    /// [`TestPki::issue`] valid for `days` (`"-1"`: expired a day before it was made).
    fn issue_for_days(&self, name: &str, cn: &str, ext: &str, days: &str) {
        let (pem, key, csr, extfile) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        let subj = format!("/CN={cn}");
        self.openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj,
        ]);
        std::fs::write(
            self.path(&extfile),
            format!("{ext}\nbasicConstraints=CA:FALSE\n"),
        )
        .unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            days,
            "-extfile",
            &extfile,
        ]);
        let pk8 = format!("{name}.pk8");
        self.openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &key, "-out", &pk8]);
    }

    /// A 4.9.7 NameServer (permissive) and broker (enforcing TLS, plus `broker_opts`) serving
    /// the `server` certificate.
    fn servers(&self, broker_opts: &str) -> common::java_servers::JavaServers {
        let tls = format!(
            "-Dtls.test.mode.enable=false -Dtls.server.certPath={0}/server.pem -Dtls.server.keyPath={0}/server.pk8",
            self.dir.display()
        );
        common::java_servers::start_extra_broker_cluster_with_env(
            "",
            &[
                (
                    "NAMESRV_JAVA_OPTS",
                    &format!("{tls} -Dtls.server.mode=permissive"),
                ),
                (
                    "BROKER_JAVA_OPTS",
                    &format!("{tls} -Dtls.server.mode=enforcing -Dtls.enable=false {broker_opts}"),
                ),
            ],
        )
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A producer of one core on `namesrv`, over TLS when `tls` is given.
fn tls_producer(namesrv: &str, tls: Option<rocketmq_tpc::TlsOptions>) -> Producer {
    let mut builder = Producer::builder()
        .namesrv(namesrv)
        .producer_group("tpc_tls")
        .cores(1)
        .send_timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder.config_mut().core.spin_before_park = Duration::ZERO;
    builder.config_mut().attempt_timeout = Duration::from_secs(3);
    builder.build().unwrap()
}

/// Sends `n` messages; each must be answered SEND_OK with its own queue offset. The read-back
/// helpers speak plaintext, which an enforcing broker refuses: the proof of storage is each
/// SEND_OK with a queue offset, answered over TLS by the broker.
fn assert_tls_sends_stored(producer: &Producer, topic: &str, n: usize) {
    let mut offsets = std::collections::BTreeSet::new();
    for i in 0..n {
        let r = producer
            .send(Message::new(topic, format!("over TLS {i}")))
            .unwrap_or_else(|e| panic!("TLS send {i}: {e}"));
        assert_eq!(r.status, SendStatus::SendOk);
        assert!(r.queue_offset >= 0, "{r:?}");
        offsets.insert((r.queue.queue_id, r.queue_offset));
    }
    assert_eq!(offsets.len(), n, "each send stored at its own offset");
}

/// Fails with an error that names TLS, within the send budget (no hang, no retry storm).
fn assert_tls_refused(producer: &Producer, topic: &str, what: &str) {
    let started = std::time::Instant::now();
    match producer.send(Message::new(topic, what.to_owned())) {
        Err(e) => assert!(
            e.to_string().contains("TLS") || e.to_string().contains("closed"),
            "{what}: {e}"
        ),
        Ok(r) => panic!("{what}: accepted: {r:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{what}: took {:?}",
        started.elapsed()
    );
}

/// TLS (rustls on the producer's own sockets) to a 4.9.7 broker that refuses plaintext
/// (`tls.server.mode=enforcing`; the NameServer is permissive): TLS sends are stored, a
/// plaintext producer is refused, and a producer that does not trust the certificate, or
/// expects another name, fails the handshake with a clear error. Certificates are made by the
/// test (openssl).
#[test]
fn tls_sends_are_stored_on_a_broker_that_enforces_tls() {
    let pki = TestPki::new("tls");
    // rustls refuses a CA certificate used as the server's own: a leaf signed by the test CA.
    pki.issue("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1");
    pki.self_signed("other", "other");
    let servers = pki.servers("");
    let topic = topic("tls");
    let trusting = rocketmq_tpc::TlsOptions::trusting(pki.path("ca.pem"));
    let secured = tls_producer(&servers.namesrv, Some(trusting.clone()));
    assert_tls_sends_stored(&secured, &topic, 5);
    let plain = tls_producer(&servers.namesrv, None);
    assert!(
        plain.send(Message::new(&topic, "plaintext")).is_err(),
        "the enforcing broker refused plaintext"
    );
    // A CA nobody asked the producer to trust.
    let untrusting = tls_producer(
        &servers.namesrv,
        Some(rocketmq_tpc::TlsOptions::trusting(pki.path("other.pem"))),
    );
    assert_tls_refused(&untrusting, &topic, "untrusted certificate");
    // A server that closes every connection during the handshake: a clear error within the
    // budget (no hang, no retry storm).
    let closer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closer_addr = closer.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in closer.incoming() {
            drop(stream);
        }
    });
    assert_tls_refused(
        &tls_producer(&closer_addr, Some(trusting.clone())),
        &topic,
        "a server that closes during the handshake",
    );
    // A certificate of the trusted CA that has expired, served by `openssl s_server`.
    pki.issue_for_days("expired", "127.0.0.1", "subjectAltName=IP:127.0.0.1", "-1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s_server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-naccept", "20", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(pki.path("expired.pem"))
        .arg("-key")
        .arg(pki.path("expired.key"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let listening = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < listening,
            "openssl s_server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let expired = tls_producer(&format!("127.0.0.1:{port}"), Some(trusting.clone()));
    match expired.send(Message::new(&topic, "expired")) {
        Err(e) => assert!(
            e.to_string().contains("TLS") && e.to_string().to_lowercase().contains("expired"),
            "an expired certificate: {e}"
        ),
        Ok(r) => panic!("an expired certificate was accepted: {r:?}"),
    }
    let _ = s_server.kill();
    let _ = s_server.wait();
    // The right CA, the wrong name.
    let mut misnamed = trusting;
    misnamed.server_name = Some("broker.example".into());
    assert_tls_refused(
        &tls_producer(&servers.namesrv, Some(misnamed)),
        &topic,
        "server name mismatch",
    );
}

/// Mutual TLS: a 4.9.7 broker that requires client certificates signed by the test CA
/// (`tls.server.need.client.auth=require`, `tls.server.authClient=true`) stores the sends of a
/// producer that presents one, and refuses one that presents none or one from another CA.
/// Half a client identity is refused at build.
#[test]
fn mutual_tls_sends_are_stored_and_clients_without_a_certificate_are_refused() {
    let pki = TestPki::new("mtls");
    pki.issue("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1");
    pki.issue("client", "tpc-client", "extendedKeyUsage=clientAuth");
    pki.self_signed("rogue", "rogue-client");
    let servers = pki.servers(&format!(
        "-Dtls.server.need.client.auth=require -Dtls.server.authClient=true -Dtls.server.trustCertPath={}",
        pki.path("ca.pem").display()
    ));
    let topic = topic("mtls");
    let trusting = rocketmq_tpc::TlsOptions::trusting(pki.path("ca.pem"));
    let identified = trusting
        .clone()
        .with_client_cert(pki.path("client.pem"), pki.path("client.key"));
    assert_tls_sends_stored(&tls_producer(&servers.namesrv, Some(identified)), &topic, 5);
    assert_tls_refused(
        &tls_producer(&servers.namesrv, Some(trusting.clone())),
        &topic,
        "no client certificate",
    );
    let rogue = trusting
        .clone()
        .with_client_cert(pki.path("rogue.pem"), pki.path("rogue.key"));
    assert_tls_refused(
        &tls_producer(&servers.namesrv, Some(rogue)),
        &topic,
        "client certificate from another CA",
    );
    let mut half = trusting;
    half.client_cert_file = Some(pki.path("client.pem"));
    let half = Producer::builder()
        .namesrv(&servers.namesrv)
        .producer_group("tpc_tls")
        .tls(half)
        .build();
    match half {
        Err(rocketmq_tpc::Error::InvalidConfig { reason }) => {
            assert!(reason.contains("client_key_file"), "{reason}")
        }
        Err(other) => panic!("a client certificate without its key: {other}"),
        Ok(_) => panic!("a client certificate without its key was accepted"),
    }
}
