//! CPU time from /proc (utime + stime), for the process and for the producer's core threads.

const CLOCK_TICKS_PER_S: f64 = 100.0;

fn stat_cpu_s(stat: &str) -> Option<f64> {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_S)
}

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
    fn parses_stat() {
        let s = "123 (a b) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0";
        assert_eq!(super::stat_cpu_s(s), Some(4.0));
        assert!(super::self_cpu_s() >= 0.0);
    }
}
