//! CPU time from /proc (utime + stime), for the process and for the producer's core threads.

use null_broker::measure::stat_cpu_s;

/// CPU seconds of a process.
pub fn process_cpu_s(pid: &str) -> Option<f64> {
    stat_cpu_s(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU seconds of this process.
pub fn self_cpu_s() -> f64 {
    process_cpu_s("self").unwrap_or(0.0)
}

/// CPU seconds of this process's threads whose name starts with `prefix`.
pub fn threads_cpu_s(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            if !comm.starts_with(prefix) {
                return None;
            }
            stat_cpu_s(&std::fs::read_to_string(t.path().join("stat")).ok()?)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_cpu() {
        assert!(super::self_cpu_s() >= 0.0);
    }
}
