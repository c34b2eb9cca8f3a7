//! The results as a markdown section, printed and (with `--write-docs`) written into
//! docs/benchmarks.md in place of the previous one.

use crate::measure::{Latency, Percentiles, Throughput};
use crate::scale::ScaleResult;
use crate::workload::Mix;
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

pub const HEADING: &str = "## End-to-end (scripts/bench)";

pub struct SystemResult {
    pub name: String,
    pub throughput: Throughput,
    pub peak_rss_kib: u64,
    pub latency: Vec<Latency>,
}

pub struct Report {
    pub command: String,
    pub date: String,
    pub machine: String,
    /// /proc/loadavg before and after the run: the machine is shared.
    pub load: (String, String),
    pub format: &'static str,
    pub templates: usize,
    pub subjects: u64,
    pub partitions: i32,
    pub shipped_rules: usize,
    pub synthetic_rules: usize,
    pub phase_secs: u64,
    pub fetch_wait_ms: u32,
    pub mix: Mix,
    pub baseline: SystemResult,
    pub containd: SystemResult,
    /// The scale-out phase, one row per instance count.
    pub scale_out: Vec<ScaleResult>,
}

/// `nproc`, the CPU model and the memory, from /proc.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    format!(
        "{cores} cores ({model}), {:.1} GiB RAM, {}",
        mem_kib as f64 / 1024.0 / 1024.0,
        std::env::consts::ARCH
    )
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

fn percentiles(p: &Percentiles) -> String {
    format!("{} / {} / {} ms", p.p50, p.p99, p.p999)
}

fn latency_cell(l: &Latency) -> String {
    let mut s = percentiles(&l.total);
    if l.drain_secs > 1.0 {
        let _ = write!(
            s,
            " (fell behind: done {:.0} s after the last send, {}/s overall)",
            l.drain_secs,
            thousands(l.completed_rate)
        );
    }
    s
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = self.preamble();
        s.push_str(&self.comparison_table());
        s.push_str(&self.method());
        s.push_str(&self.notes());
        s.push_str(&self.scale_out_table());
        s
    }

    /// The heading, the command, the machine and the workload.
    fn preamble(&self) -> String {
        let m = &self.mix;
        let n = m.signals.max(1) as f64;
        let mut s = String::new();
        let _ = writeln!(s, "{HEADING}\n");
        let _ = writeln!(
            s,
            "`{}` on {}, {}; load average {} before the run, {} after. The broker (nisshi 0.8.1, \
             memory storage) runs on the same machine on loopback; the two systems run one after \
             the other against it, each as its own process.\n",
            self.command, self.date, self.machine, self.load.0, self.load.1
        );
        let _ = writeln!(
            s,
            "Workload: {} preloaded signals ({} input, mean {} B) generated from {} templates (the \
             seed scenarios and every rule-pack test signal, uniformly), re-addressed to {} \
             identities and keyed by canonical subject id, on {} partitions; each carries a \
             bucket attribute and a note of 0–2 KiB. Rules: the shipped packs ({} rules) plus {} \
             synthetic ones (90 % on event types no signal carries, 10 % on real event types with a \
             condition true for 1 signal in 20). containd's own processor, run offline over the \
             same signals, gives {:.2} commands per signal ({:.1} % of signals get at least one) \
             plus one decision record: {:.2} output records and {} B per signal, which the baseline \
             reproduces record for record.\n",
            thousands(n),
            self.format,
            thousands(m.input_bytes as f64 / n),
            self.templates,
            thousands(self.subjects as f64),
            self.partitions,
            self.shipped_rules,
            thousands(self.synthetic_rules as f64),
            m.commands as f64 / n,
            m.with_commands as f64 * 100.0 / n,
            (m.commands as f64 + n) / n,
            thousands(m.output_bytes as f64 / n),
        );
        s
    }

    /// The two systems side by side: throughput, CPU, memory, latency per offered load.
    fn comparison_table(&self) -> String {
        let (b, c) = (&self.baseline, &self.containd);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| | baseline (rdkafka copier) | containd | containd ÷ baseline |\n|---|---|---|---|"
        );
        let _ = writeln!(
            s,
            "| throughput, preloaded backlog (signals/s) | {} | {} | {} |",
            thousands(b.throughput.rate()),
            thousands(c.throughput.rate()),
            ratio(c.throughput.rate(), b.throughput.rate())
        );
        let out_rate = |t: &Throughput| t.outputs as f64 / t.secs;
        let _ = writeln!(
            s,
            "| output records/s | {} | {} | {} |",
            thousands(out_rate(&b.throughput)),
            thousands(out_rate(&c.throughput)),
            ratio(out_rate(&c.throughput), out_rate(&b.throughput))
        );
        let _ = writeln!(
            s,
            "| CPU seconds per 1 M signals (process user + system) | {:.1} | {:.1} | {} |",
            b.throughput.cpu_per_million(),
            c.throughput.cpu_per_million(),
            ratio(
                c.throughput.cpu_per_million(),
                b.throughput.cpu_per_million()
            )
        );
        let _ = writeln!(
            s,
            "| peak RSS (VmHWM, whole run) | {:.0} MiB | {:.0} MiB | {} |",
            b.peak_rss_kib as f64 / 1024.0,
            c.peak_rss_kib as f64 / 1024.0,
            ratio(c.peak_rss_kib as f64, b.peak_rss_kib as f64)
        );
        for (lb, lc) in b.latency.iter().zip(&c.latency) {
            let _ = writeln!(
                s,
                "| signal→command p50 / p99 / p99.9 at {}/s for {} s | {} | {} | {} (p99) |",
                thousands(lb.offered as f64),
                self.phase_secs,
                latency_cell(lb),
                latency_cell(lc),
                ratio(lc.total.p99 as f64, lb.total.p99 as f64)
            );
            let _ = writeln!(
                s,
                "| … of which broker to broker (signal stored → command stored) | {} | {} | {} (p99) |",
                percentiles(&lb.hop),
                percentiles(&lc.hop),
                ratio(lc.hop.p99 as f64, lb.hop.p99 as f64)
            );
        }
        s
    }

    /// How throughput, CPU and latency are measured.
    fn method(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\nHow it is measured: throughput is the preloaded backlog divided by the time from the \
             last 20 ms watermark poll before the system's first output to the first poll that \
             sees every expected output record on the broker (all acknowledged); CPU is the \
             process's utime + stime over the same window (/proc/PID/stat). Latency: signals are \
             produced at the fixed rate (1 ms pacing, linger 1 ms); the send time (what the \
             record's CreateTime would be) is kept by the harness, and signal and command topics \
             use `LogAppendTime`, so each record's timestamp is when the broker stored it. The \
             first latency row runs from the signal's send to its command being stored; the \
             second from the signal being stored to its command being stored, which leaves out \
             the load generator's own producer. Every command record is one sample (millisecond \
             resolution). Both systems' \
             consumers run with `fetch.wait.max.ms = {}`: nisshi answers a waiting fetch by \
             re-reading storage at half the remaining wait rather than waking on new records, so \
             librdkafka's 500 ms default would put up to a quarter second of broker polling into \
             every sample. The baseline \
             uses containd's `consumer_config`/`producer_config` and `OffsetTracker` (idempotent, \
             linger 5 ms, asynchronous acknowledgements, commit after ack every 500 ms) and writes \
             filler payloads of the sizes containd writes, keys and the 32-byte command-id header \
             included; it does no decoding, evaluation or encoding.",
            self.fetch_wait_ms
        );
        s
    }

    /// Latency samples that could not be matched, and loads the generator did not reach.
    fn notes(&self) -> String {
        let mut notes = Vec::new();
        for r in [&self.baseline, &self.containd] {
            for l in &r.latency {
                if l.unmatched > 0 {
                    notes.push(format!(
                        "{}: {} command records at {}/s could not be matched to a signal",
                        r.name, l.unmatched, l.offered
                    ));
                }
                if l.sent_rate < 0.95 * l.offered as f64 {
                    notes.push(format!(
                        "{} at {}/s: the load generator only reached {}/s",
                        r.name,
                        l.offered,
                        thousands(l.sent_rate)
                    ));
                }
            }
        }
        match notes.is_empty() {
            true => String::new(),
            false => format!("\nNotes: {}.\n", notes.join("; ")),
        }
    }

    /// Instances in one group against the same backlog, the copier's row for scale.
    fn scale_out_table(&self) -> String {
        let mut s = String::new();
        if self.scale_out.is_empty() {
            return s;
        }
        let _ = writeln!(
            s,
            "\nScale-out: N containd instances in one consumer group drain the same backlog on \
             {} partitions, each N on output topics of its own, started together (group joins and \
             the rebalances as instances arrive are inside the measured time). \"Extra\" counts \
             output records beyond the expected ones 3 s after the drain: a record produced twice \
             across a rebalance would show there.\n",
            self.partitions
        );
        let _ = writeln!(
            s,
            "| instances | throughput (signals/s) | ÷ copier | CPU s per 1 M (all instances) | peak RSS (sum) | input records consumed by each (signals + approvals) | extra output records |\n|---|---|---|---|---|---|---|"
        );
        let copier = self.baseline.throughput.rate();
        for r in &self.scale_out {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.0} MiB | {} | {} |",
                r.instances,
                thousands(r.throughput.rate()),
                ratio(r.throughput.rate(), copier),
                r.throughput.cpu_per_million(),
                r.peak_rss_kib as f64 / 1024.0,
                r.per_instance
                    .iter()
                    .map(|&c| thousands(c as f64))
                    .collect::<Vec<_>>()
                    .join(" / "),
                r.extra
            );
        }
        s
    }
}

/// Replaces the section under [`HEADING`] (up to the next `## `) or appends it.
pub fn write_docs(path: &Path, section: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let new = match text.find(HEADING) {
        Some(at) => {
            let rest = &text[at + HEADING.len()..];
            let end = rest
                .find("\n## ")
                .map_or(text.len(), |e| at + HEADING.len() + e + 1);
            let rest = &text[end..];
            let gap = if rest.is_empty() { "\n" } else { "\n\n" };
            format!(
                "{}{}{gap}{rest}",
                &text[..at],
                section.trim_end_matches('\n')
            )
        }
        None => format!(
            "{}\n{}",
            text.trim_end_matches('\n').to_string() + "\n",
            section
        ),
    };
    std::fs::write(path, new)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_its_own_section() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.md");
        std::fs::write(&p, "# B\n\n## Rules\n\nx\n").unwrap();
        write_docs(&p, &format!("{HEADING}\n\none\n")).unwrap();
        write_docs(&p, &format!("{HEADING}\n\ntwo\n")).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, format!("# B\n\n## Rules\n\nx\n\n{HEADING}\n\ntwo\n"));
        std::fs::write(&p, format!("# B\n\n{HEADING}\n\nold\n\n## Later\n\ny\n")).unwrap();
        write_docs(&p, &format!("{HEADING}\n\nnew\n\n")).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, format!("# B\n\n{HEADING}\n\nnew\n\n## Later\n\ny\n"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
