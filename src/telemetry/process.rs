//! `process_*` metrics as every Prometheus client library exports them (CPU, memory, file
//! descriptors, start time), read from `/proc/self` at scrape time. Off Linux: none.

use std::fmt::Write;

/// The process block in OpenMetrics form, or nothing where `/proc` is not there.
pub fn render() -> String {
    let Some(stat) = Stat::read() else {
        return String::new();
    };
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, sample: &str, value: f64| {
        let _ = write!(
            out,
            "# HELP {name} {help}.\n# TYPE {name} {kind}\n{sample} {value}\n"
        );
    };
    metric(
        "process_cpu_seconds",
        "counter",
        "Total user and system CPU time spent in seconds",
        "process_cpu_seconds_total",
        stat.cpu_seconds,
    );
    let gauges = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            Some(stat.rss_bytes),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            Some(stat.vsize_bytes),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            stat.start_time,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors",
            open_fds(),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors",
            max_fds(),
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(v) = value {
            metric(name, "gauge", help, name, v);
        }
    }
    out
}

struct Stat {
    cpu_seconds: f64,
    rss_bytes: f64,
    vsize_bytes: f64,
    start_time: Option<f64>,
}

impl Stat {
    fn read() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &text[text.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // stat(5): utime 14, stime 15, starttime 22, vsize 23, rss 24 (1-based, counting
        // pid and comm), so 11, 12, 19, 20, 21 here.
        let num = |i: usize| fields.get(i)?.parse::<f64>().ok();
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
        if ticks <= 0.0 || page <= 0.0 {
            return None;
        }
        Some(Self {
            cpu_seconds: (num(11)? + num(12)?) / ticks,
            vsize_bytes: num(20)?,
            rss_bytes: num(21)? * page,
            start_time: boot_time().zip(num(19)).map(|(boot, t)| boot + t / ticks),
        })
    }
}

fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn open_fds() -> Option<f64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

fn max_fds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_process() {
        let text = super::render();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {text}"))
        };
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_open_fds") >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
    }
}
