//! A Java 4.9.7 consumer (`DefaultLitePullConsumer` from the built client jar), compiled with
//! javac on first use: reads a topic back from the beginning and prints each message's unique
//! id and body (as the Java client decodes it: decompressed by the sysFlag's type bits).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;

const SOURCE: &str = r#"
import java.util.Base64;
import java.util.Collection;
import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;

/** Prints "uniqueId base64(body)" for the first N messages of a topic, then exits. */
public class TpcReadBack {
    public static void main(String[] args) throws Exception {
        String namesrv = args[0], topic = args[1];
        int expected = Integer.parseInt(args[2]);
        DefaultLitePullConsumer consumer = new DefaultLitePullConsumer("tpc_readback_" + System.nanoTime());
        consumer.setNamesrvAddr(namesrv);
        consumer.setAutoCommit(false);
        consumer.start();
        Collection<MessageQueue> queues = consumer.fetchMessageQueues(topic);
        consumer.assign(queues);
        for (MessageQueue q : queues) {
            consumer.seekToBegin(q);
        }
        int seen = 0;
        long deadline = System.currentTimeMillis() + 30000;
        while (seen < expected && System.currentTimeMillis() < deadline) {
            for (MessageExt m : consumer.poll(1000)) {
                System.out.println(m.getMsgId() + " " + Base64.getEncoder().encodeToString(m.getBody()));
                seen++;
            }
        }
        System.out.flush();
        consumer.shutdown();
        System.exit(seen >= expected ? 0 : 3);
    }
}
"#;

/// The client's class path (build.sh's `classpath.txt`, made absolute).
fn class_path() -> String {
    let dir = super::java_servers::java_dir();
    let listed = std::fs::read_to_string(dir.join("classpath.txt"))
        .unwrap_or_else(|e| panic!("{}/classpath.txt: {e}", dir.display()));
    listed
        .trim()
        .split(':')
        .map(|entry| {
            if entry.starts_with('/') {
                entry.to_owned()
            } else {
                dir.join(entry).display().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// Compiles the consumer once per process; returns its class folder.
fn compiled() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tpc-java-consumer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("TpcReadBack.java"), SOURCE).unwrap();
        let out = Command::new("javac")
            .arg("-cp")
            .arg(class_path())
            .arg("-d")
            .arg(&dir)
            .arg(dir.join("TpcReadBack.java"))
            .output()
            .expect("javac (build.sh installs the JDK)");
        assert!(
            out.status.success(),
            "javac TpcReadBack: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// The bodies of the first `expected` messages of `topic`, by unique id, as a Java 4.9.7
/// consumer reads them; fails naming what it printed when it cannot read them within `limit`.
pub fn read_bodies(
    namesrv: &str,
    topic: &str,
    expected: usize,
    limit: Duration,
) -> BTreeMap<String, Vec<u8>> {
    let classes = compiled();
    let logs = classes.join("logs");
    let args = (namesrv.to_owned(), topic.to_owned(), expected.to_string());
    let cp = format!("{}:{}", classes.display(), class_path());
    let out = super::within(limit, "the Java consumer", move || {
        Command::new("java")
            .arg(format!("-Drocketmq.client.logRoot={}", logs.display()))
            .arg(format!("-Duser.home={}", logs.display()))
            .arg("-cp")
            .arg(cp)
            .arg("TpcReadBack")
            .args([&args.0, &args.1, &args.2])
            .output()
            .expect("run java")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the Java consumer read fewer than {expected} messages of {topic} ({}): stdout {stdout} stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| {
            let (id, body) = line.split_once(' ')?;
            let body = base64::engine::general_purpose::STANDARD
                .decode(body)
                .ok()?;
            Some((id.to_owned(), body))
        })
        .collect()
}
