//! Helpers shared by the measuring binaries (`pingpong`, `ceiling`, loadgen): numeric flags, CPU
//! time from `/proc` and pinning.

/// The number after flag `name` in `args`, or `default` when the flag is absent.
///
/// # Errors
///
/// A one-line message when the flag has no value or the value is not a number.
pub fn number_arg(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
    }
}

/// CPU seconds (utime + stime) in the text of a `/proc/…/stat` file, or `None` when it does not
/// parse.
pub fn stat_cpu_s(stat: &str) -> Option<f64> {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_S)
}

/// The kernel's clock ticks per second in `/proc/…/stat` (USER_HZ).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// CPU seconds (user + system, the kernel's work on the thread's behalf included) of the
/// calling thread, from `/proc/thread-self/stat` (100 Hz ticks: read it over thousands of
/// rounds); 0 where it cannot be read.
pub fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| stat_cpu_s(&stat))
        .unwrap_or(0.0)
}

/// Pins the calling thread to `cpu`, best effort: an unpinned run still measures, only more
/// noisily.
pub fn pin(cpu: usize) {
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_cpu() {
        let args: Vec<String> = ["--rounds", "7", "--bytes"].map(String::from).to_vec();
        assert_eq!(number_arg(&args, "--rounds", 1), Ok(7));
        assert_eq!(number_arg(&args, "--rate", 3), Ok(3));
        assert!(number_arg(&args, "--bytes", 1).is_err());
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {}
        assert!(thread_cpu_s() > 0.0);
        assert_eq!(
            stat_cpu_s("123 (a b) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0"),
            Some(4.0)
        );
        assert_eq!(stat_cpu_s("123 (no fields)"), None);
    }
}
