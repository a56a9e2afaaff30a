//! Helpers shared by the measuring binaries (`pingpong`, `ceiling`): their numeric flags and the
//! calling thread's CPU time.

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

/// CPU seconds (user + system, the kernel's work on the thread's behalf included) of the
/// calling thread, from `/proc/thread-self/stat` (100 Hz ticks: read it over thousands of
/// rounds); 0 where it cannot be read.
pub fn thread_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    // After the command name: state is field 3, utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
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
    }
}
