//! What a process costs, read from `/proc`: CPU time (user + system, exited threads
//! included), resident memory now and at its peak, and resetting the peak between scenarios.
//! Resident memory is split too: `anon` is what the agent allocated; the rest is mostly the
//! mapped binary itself (its code is resident whether or not it runs).

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ; 100 on every Linux we run on).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu: Duration,
    pub rss_kib: u64,
    pub peak_kib: u64,
    /// Resident anonymous memory: heap, stacks, runtime.
    pub anon_kib: u64,
}

pub fn read(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Usage {
        cpu: Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND),
        rss_kib: kib("VmRSS:"),
        peak_kib: kib("VmHWM:"),
        anon_kib: kib("RssAnon:"),
    }
}

/// Starts the peak (VmHWM) again from the current resident size.
pub fn reset_peak(pid: u32) {
    if let Err(e) = std::fs::write(format!("/proc/{pid}/clear_refs"), "5") {
        eprintln!("note: cannot reset the peak RSS ({e}); peaks are since start");
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
