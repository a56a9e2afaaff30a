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
use common::read_back::{assert_same, stored_when_visible, Layout};
use common::{parity, topic, varied_messages};
use rocketmq_tpc::{Message, Producer, SendStatus, ShortString};

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

/// Every sent message is stored on the Java broker exactly once and equals what was sent.
fn assert_all_stored(
    namesrv: &str,
    brokers: &[String],
    topic: &str,
    sent: &[(Message, ShortString)],
) {
    let expected: Vec<&str> = sent.iter().map(|(_, key)| key.as_str()).collect();
    let stored = stored_when_visible(&Layout::of(namesrv, brokers, topic), topic, &expected);
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|k| !stored.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acked messages not readable from {brokers:?} after 15 s (UNIQ_KEYs): {missing:?}",
        missing.len(),
        sent.len()
    );
    let unexpected: Vec<&String> = stored
        .keys()
        .filter(|k| !expected.contains(&k.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "stored in {topic} but never sent: {unexpected:?}"
    );
    for (message, key) in sent {
        let copies = &stored[key.as_str()];
        assert_eq!(copies.len(), 1, "{key} stored {} times", copies.len());
        assert_same(message, key, &copies[0]);
    }
}

#[test]
fn sync_sends_are_stored_as_sent_on_the_java_broker() {
    let servers = java_rocketmq();
    let topic = topic("sync");
    let producer = producer(&servers.namesrv);
    let sent: Vec<(Message, ShortString)> = varied_messages(&topic, 20, 300)
        .into_iter()
        .map(|m| {
            let r = producer
                .send(m.clone())
                .unwrap_or_else(|e| panic!("send to the Java broker: {e}"));
            assert_eq!(r.status, SendStatus::SendOk);
            assert_eq!(&*r.queue.topic, m.topic);
            (m, r.msg_id)
        })
        .collect();
    assert_all_stored(&servers.namesrv, &servers.brokers, &topic, &sent);
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
    assert_eq!(stats.cores[0].retries, 0, "AccessDenied is never retried");
}

/// TLS (rustls on the producer's own sockets) to a 4.9.7 broker that refuses plaintext
/// (`tls.server.mode=enforcing`; the NameServer is permissive): TLS sends are stored, a
/// plaintext producer is refused, and a producer that does not trust the certificate fails the
/// handshake with a clear error. The certificate is made by the test (openssl).
#[test]
fn tls_sends_are_stored_on_a_broker_that_enforces_tls() {
    let dir = std::env::temp_dir().join(format!("tpc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (apt-get install openssl)");
        assert!(status.success(), "openssl {args:?}");
    };
    // A test CA, and a server certificate for 127.0.0.1 signed by it (rustls refuses a CA
    // certificate used as the server's own).
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "30",
        "-subj",
        "/CN=tpc-test-ca",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "30",
        "-extfile",
        "server.ext",
    ]);
    openssl(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-out", "key8.pem",
    ]);
    let tls = format!(
        "-Dtls.test.mode.enable=false -Dtls.server.certPath={0}/cert.pem -Dtls.server.keyPath={0}/key8.pem",
        dir.display()
    );
    let servers = common::java_servers::start_extra_broker_cluster_with_env(
        "",
        &[
            (
                "NAMESRV_JAVA_OPTS",
                &format!("{tls} -Dtls.server.mode=permissive"),
            ),
            (
                "BROKER_JAVA_OPTS",
                &format!("{tls} -Dtls.server.mode=enforcing -Dtls.enable=false"),
            ),
        ],
    );
    let producer_with = |tls: Option<rocketmq_tpc::TlsOptions>| {
        let mut builder = Producer::builder()
            .namesrv(&servers.namesrv)
            .producer_group("tpc_tls")
            .cores(1)
            .send_timeout(Duration::from_secs(10));
        if let Some(tls) = tls {
            builder = builder.tls(tls);
        }
        builder.config_mut().core.spin_before_park = Duration::ZERO;
        builder.config_mut().attempt_timeout = Duration::from_secs(3);
        builder.build().unwrap()
    };
    let topic = topic("tls");
    let secured = producer_with(Some(rocketmq_tpc::TlsOptions::trusting(dir.join("ca.pem"))));
    let sent: Vec<(Message, ShortString)> = (0..5)
        .map(|i| {
            let m = Message::new(&topic, format!("over TLS {i}"));
            let r = secured
                .send(m.clone())
                .unwrap_or_else(|e| panic!("a TLS send: {e}"));
            assert_eq!(r.status, SendStatus::SendOk);
            assert!(r.queue_offset >= 0);
            (m, r.msg_id)
        })
        .collect();
    // The read-back helpers speak plaintext, which this broker refuses; the proof of storage
    // is each SEND_OK with its own queue offset, answered over TLS by the enforcing broker.
    assert_eq!(sent.len(), 5);
    let plain = producer_with(None);
    assert!(
        plain.send(Message::new(&topic, "plaintext")).is_err(),
        "the enforcing broker refused plaintext"
    );
    // A CA nobody asked the producer to trust (made with the same helper as the real one).
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.pem",
        "-days",
        "1",
        "-subj",
        "/CN=other",
    ]);
    let untrusting = producer_with(Some(rocketmq_tpc::TlsOptions::trusting(
        dir.join("other.pem"),
    )));
    match untrusting.send(Message::new(&topic, "untrusted")) {
        Err(e) => assert!(e.to_string().contains("TLS"), "{e}"),
        Ok(r) => panic!("a certificate nobody trusts was accepted: {r:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
