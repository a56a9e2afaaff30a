//! Where loadgen sends: a real cluster, the local real broker (started and stopped here), or the
//! in-process sink.

use std::process::Command;

use null_broker::NullBroker;

/// A running target; stops what it started when dropped.
pub enum Target {
    Cluster(String),
    Local { namesrv: String, dir: String },
    Sink(NullBroker),
}

impl Target {
    pub fn namesrv(&self) -> &str {
        match self {
            Target::Cluster(a) => a,
            Target::Local { namesrv, .. } => namesrv,
            Target::Sink(s) => s.addr(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Cluster(_) => "cluster",
            Target::Local { .. } => "local-broker",
            Target::Sink(_) => "sink",
        }
    }

    /// CPU seconds used so far by the local broker processes (NameServer + broker).
    pub fn broker_cpu_s(&self) -> Option<f64> {
        let Target::Local { dir, .. } = self else {
            return None;
        };
        let pid = std::fs::read_to_string(format!("{dir}/broker-0.pid")).ok()?;
        crate::cpu::process_cpu_s(pid.trim())
    }
}

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../rocketmq-local").to_owned()
}

/// Starts the local real broker, owned by this process.
pub fn start_local() -> Result<Target, String> {
    eprintln!("loadgen: no --namesrv given; starting a local RocketMQ with tools/rocketmq-local");
    let out = Command::new("bash")
        .arg(script())
        .args(["start", "--owner-pid", &std::process::id().to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run tools/rocketmq-local: {e}"))?;
    if !out.status.success() {
        return Err("tools/rocketmq-local could not start the local broker (see above)".into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .ok_or_else(|| format!("tools/rocketmq-local printed no {key}"))
    };
    Ok(Target::Local {
        namesrv: get("NAMESRV_ADDR")?,
        dir: get("ROCKETMQ_LOCAL_DIR")?,
    })
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Target::Local { dir, .. } = self {
            let _ = Command::new("bash")
                .arg(script())
                .args(["stop", dir])
                .status();
        }
    }
}
