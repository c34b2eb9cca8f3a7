//! Measuring a system under test (containd or the copier), which runs as a child process:
//! its CPU time and peak memory from /proc, its progress from the high watermarks of its
//! output topics, and its signal→command latency from the records it wrote.

use crate::kafka::{produce_paced, Kafka};
use crate::spec::Spec;
use crate::workload::Record;
use anyhow::{bail, Context, Result};
use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// /proc/PID/stat reports CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// A system under test: one process, or several instances of it in one consumer group.
pub struct System {
    pub name: String,
    /// Its processes, each with the file its stderr goes to.
    pub processes: Vec<(Child, PathBuf)>,
    /// Output topics: decisions first, then the command topics, then the state changelog.
    pub outputs: Vec<String>,
    /// The topic its latency-phase signals go to.
    pub rate_topic: String,
}

impl System {
    pub fn spawn(
        name: &str,
        cmd: Command,
        log: PathBuf,
        outputs: Vec<String>,
        rate_topic: String,
    ) -> Result<Self> {
        Self::spawn_all(name, vec![(cmd, log)], outputs, rate_topic)
    }

    /// Starts every command as one instance of the system.
    pub fn spawn_all(
        name: &str,
        cmds: Vec<(Command, PathBuf)>,
        outputs: Vec<String>,
        rate_topic: String,
    ) -> Result<Self> {
        let mut processes = Vec::with_capacity(cmds.len());
        for (mut cmd, log) in cmds {
            let child = cmd
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .with_context(|| format!("start {name}"))?;
            processes.push((child, log));
        }
        Ok(Self {
            name: name.to_string(),
            processes,
            outputs,
            rate_topic,
        })
    }

    /// The first instance's process id.
    pub fn pid(&self) -> u32 {
        self.processes[0].0.id()
    }

    /// User + system CPU seconds of every instance so far (all threads).
    pub fn cpu_seconds(&self) -> Result<f64> {
        let mut total = 0.0;
        for (child, _) in &self.processes {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))?;
            // Fields after the parenthesised command name; utime and stime are fields 14, 15.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            total += (ticks(11) + ticks(12)) / TICKS_PER_SEC;
        }
        Ok(total)
    }

    /// Peak resident set size (VmHWM) in KiB, summed over the instances.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        let mut total = 0;
        for (child, _) in &self.processes {
            let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
            total += status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .context("no VmHWM in /proc status")?;
        }
        Ok(total)
    }

    fn check_alive(&mut self) -> Result<()> {
        for (child, log) in &mut self.processes {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited ({status}) during the run; log tail:\n{}",
                    self.name,
                    tail(log)
                );
            }
        }
        Ok(())
    }

    /// The last lines of the first instance's log.
    pub fn log_tail(&self) -> String {
        tail(&self.processes[0].1)
    }

    /// SIGTERM to every instance, then the first failed exit status (or success).
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        for (child, _) in &self.processes {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
        }
        let mut worst = None;
        for (child, _) in &mut self.processes {
            let status = child.wait()?;
            if worst.is_none() || !status.success() {
                worst = Some(status);
            }
        }
        worst.context("a system with no process")
    }

    /// Records on each output topic so far.
    pub fn counts(&self, kafka: &Kafka) -> Result<Vec<u64>> {
        self.outputs.iter().map(|t| kafka.count(t)).collect()
    }
}

fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for System {
    fn drop(&mut self) {
        for (child, _) in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The throughput phase of one system.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    pub signals: u64,
    pub outputs: u64,
    pub secs: f64,
    pub cpu_secs: f64,
}

impl Throughput {
    pub fn rate(&self) -> f64 {
        self.signals as f64 / self.secs
    }
    pub fn cpu_per_million(&self) -> f64 {
        self.cpu_secs / self.signals as f64 * 1e6
    }
}

/// Waits until the system's outputs reach `base + expected` on every output topic. The clock
/// (and the CPU account) starts at the last poll before its first output appeared and stops
/// at the first poll that sees everything; the poll interval is 20 ms.
pub fn drain(
    kafka: &Kafka,
    sys: &mut System,
    base: &[u64],
    expected: &[u64],
    stall: Duration,
) -> Result<Throughput> {
    let want: Vec<u64> = base.iter().zip(expected).map(|(b, e)| b + e).collect();
    let mut prev = (Instant::now(), sys.cpu_seconds()?);
    let mut start: Option<(Instant, f64)> = None;
    let mut last_progress = (Instant::now(), 0u64);
    loop {
        sys.check_alive()?;
        let now = Instant::now();
        let cpu = sys.cpu_seconds()?;
        let decisions = kafka.count(&sys.outputs[0])?;
        if start.is_none() && decisions > base[0] {
            start = Some(prev);
        }
        if decisions >= want[0] {
            let counts = sys.counts(kafka)?;
            if counts.iter().zip(&want).all(|(c, w)| c >= w) {
                let (t0, c0) = start.unwrap_or(prev);
                return Ok(Throughput {
                    signals: expected[0],
                    outputs: expected.iter().sum(),
                    secs: now.duration_since(t0).as_secs_f64(),
                    cpu_secs: sys.cpu_seconds()? - c0,
                });
            }
        }
        if decisions > last_progress.1 {
            last_progress = (now, decisions);
        } else if last_progress.0.elapsed() > stall {
            bail!(
                "{}: no progress for {stall:?} at {} of {} decisions; log tail:\n{}",
                sys.name,
                decisions - base[0],
                expected[0],
                sys.log_tail()
            );
        }
        prev = (now, cpu);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Percentiles of a latency sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: i64,
    pub p99: i64,
    pub p999: i64,
    pub max: i64,
}

impl Percentiles {
    fn of(mut v: Vec<i64>) -> Self {
        v.sort_unstable();
        let pct = |p: f64| -> i64 {
            if v.is_empty() {
                return 0;
            }
            v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
        };
        Self {
            p50: pct(0.50),
            p99: pct(0.99),
            p999: pct(0.999),
            max: v.last().copied().unwrap_or(0),
        }
    }
}

/// One fixed-load phase.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub offered: u64,
    /// What the paced producer achieved.
    pub sent_rate: f64,
    /// Command records matched to their signal.
    pub commands: u64,
    pub unmatched: u64,
    /// Signals per second from the first send to the last output.
    pub completed_rate: f64,
    /// From the last send to the last output: more than a second means the system fell behind.
    pub drain_secs: f64,
    /// From the signal's send time (its CreateTime) to the command's broker timestamp.
    pub total: Percentiles,
    /// From the signal's broker timestamp to the command's: the system's own hop.
    pub hop: Percentiles,
}

/// Offers `records` (workload indices `first..`) at `rate` per second, waits until every
/// output is written, then reads the signal and command records back and measures, per
/// command, from the signal's send time and from its broker timestamp to the command's
/// broker timestamp. `signal_of` maps a command record to its signal's workload index.
#[allow(clippy::too_many_arguments)]
pub fn latency(
    kafka: &Kafka,
    producer: &ThreadedProducer<DefaultProducerContext>,
    sys: &mut System,
    spec: &Spec,
    first: u64,
    records: &[Record],
    rate: u64,
    signal_of: &dyn Fn(&rdkafka::message::BorrowedMessage<'_>) -> Option<u64>,
) -> Result<Latency> {
    let mut watched = sys.outputs.clone();
    watched.push(sys.rate_topic.clone());
    let start_wm: Vec<Vec<i64>> = watched
        .iter()
        .map(|t| kafka.watermarks(t))
        .collect::<Result<_>>()?;
    let base: Vec<u64> = start_wm
        .iter()
        .map(|w| w.iter().sum::<i64>() as u64)
        .collect();
    let expected = spec.totals(first as usize..first as usize + records.len());
    let started = Instant::now();
    let (stamps, sent_rate) = produce_paced(producer, &sys.rate_topic, first, records, rate)?;
    let sent = Instant::now();
    drain(kafka, sys, &base, &expected, Duration::from_secs(60))?;
    let drain_secs = sent.elapsed().as_secs_f64();
    let completed_rate = records.len() as f64 / started.elapsed().as_secs_f64();
    let end_wm: Vec<Vec<i64>> = watched
        .iter()
        .map(|t| kafka.watermarks(t))
        .collect::<Result<_>>()?;
    let n = watched.len();
    let (arrivals, _) = kafka.read_back(
        &watched[n - 1..],
        &start_wm[n - 1..],
        &end_wm[n - 1..],
        |m| crate::copier::index(m).map(|i| i as u64),
    )?;
    let mut arrived = vec![i64::MIN; records.len()];
    for (i, ts) in arrivals {
        if let Some(a) = i
            .checked_sub(first)
            .and_then(|k| arrived.get_mut(k as usize))
        {
            *a = ts;
        }
    }
    // Command topics only: not the decisions (first), the changelog or the rate topic (last two).
    let (samples, unmatched) = kafka.read_back(
        &watched[1..n - 2],
        &start_wm[1..n - 2],
        &end_wm[1..n - 2],
        |m| signal_of(m),
    )?;
    let (mut total, mut hop) = (Vec::with_capacity(samples.len()), Vec::new());
    let mut foreign = 0;
    for (i, ts) in samples {
        let k = i.checked_sub(first).map(|k| k as usize);
        match k.and_then(|k| stamps.get(k)) {
            Some(sent) => total.push(ts - sent),
            None => foreign += 1,
        }
        if let Some(a) = k.and_then(|k| arrived.get(k)).filter(|a| **a != i64::MIN) {
            hop.push(ts - a);
        }
    }
    Ok(Latency {
        offered: rate,
        sent_rate,
        commands: total.len() as u64,
        unmatched: unmatched + foreign,
        completed_rate,
        drain_secs,
        total: Percentiles::of(total),
        hop: Percentiles::of(hop),
    })
}
