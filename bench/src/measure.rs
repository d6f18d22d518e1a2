//! Process measurements from `/proc`: peak RSS (`VmHWM` in
//! `/proc/<pid>/status`) and CPU time (`utime + stime` in `/proc/<pid>/stat`),
//! read while the process is still alive (just before it is stopped, or by
//! the process itself just before it exits).

use std::time::Duration;

/// One reading of a live process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// Peak resident set size so far, KiB.
    pub peak_rss_kib: u64,
    /// Anonymous resident memory now (`RssAnon`: heap and stacks, not the
    /// pages of memory-mapped files such as an LMDB store), KiB.
    pub anon_kib: u64,
    /// User + system CPU time so far.
    pub cpu: Duration,
}

/// Reads `pid`'s peak RSS and CPU time; `None` once it is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ProcSample { peak_rss_kib: kib(&status, "VmHWM:")?, anon_kib: kib(&status, "RssAnon:").unwrap_or(0), cpu: cpu_time(&stat)? })
}

/// `VmHWM:   12345 kB` → 12345.
fn kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

/// `utime + stime` (fields 14 and 15) in clock ticks → duration.
fn cpu_time(stat: &str) -> Option<Duration> {
    // The command name (field 2) may contain spaces: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / clock_ticks()))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Sends SIGTERM to `pid`.
pub fn terminate(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions; a stale pid only fails.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

/// CPU use in percent of one core over `wall`.
pub fn cpu_percent(cpu: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        0.0
    } else {
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let status = "Name:\tx\nVmHWM:\t  4242 kB\nVmRSS:\t 1 kB\nRssAnon:\t 77 kB\n";
        assert_eq!(kib(status, "VmHWM:"), Some(4242));
        assert_eq!(kib(status, "RssAnon:"), Some(77));
        let stat = "123 (a b) S 1 2 3 4 5 6 7 8 9 10 200 100 0 0";
        assert_eq!(cpu_time(stat), Some(Duration::from_secs_f64(300.0 / clock_ticks())));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.peak_rss_kib > 0);
    }
}
