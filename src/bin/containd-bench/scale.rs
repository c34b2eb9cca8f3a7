//! The scale-out phase: 1, 2, 4… containd instances in one consumer group drain the same
//! preloaded backlog, each instance count on output topics of its own. On a machine with as
//! many cores as the broker and every instance need, throughput grows with instances; on a
//! small one the point is that the group splits the partitions, every expected output is
//! produced exactly once, and coordination costs little.

use crate::measure::{self, System, Throughput};
use crate::workload::{self, ConfigParams};
use crate::{containd_bin, free_port, say, Prepared, RunArgs, Setup};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What one instance count measured.
pub struct ScaleResult {
    pub instances: usize,
    pub throughput: Throughput,
    /// Signals each instance consumed (its `containd_signals_consumed_total`).
    pub per_instance: Vec<u64>,
    /// VmHWM summed over the instances.
    pub peak_rss_kib: u64,
    /// Output records beyond the expected ones a few seconds after the drain (a record
    /// produced twice across a rebalance would show here).
    pub extra: u64,
}

/// The system name (and topic infix) of a scale-out run.
fn system(instances: usize) -> String {
    format!("scale{instances}")
}

/// The systems the scale-out phase will run, for topic creation.
pub fn systems(args: &RunArgs) -> Vec<String> {
    counts(args).into_iter().map(system).collect()
}

fn counts(args: &RunArgs) -> Vec<usize> {
    match args.no_scale_out {
        true => Vec::new(),
        false => args.scale_out.iter().copied().filter(|&n| n > 0).collect(),
    }
}

/// Runs every instance count in turn.
pub fn run(args: &RunArgs, s: &Setup, p: &Prepared) -> Result<Vec<ScaleResult>> {
    counts(args)
        .into_iter()
        .map(|n| run_instances(args, s, p, n))
        .collect()
}

fn run_instances(args: &RunArgs, s: &Setup, p: &Prepared, n: usize) -> Result<ScaleResult> {
    let name = system(n);
    let dir = s.work.join(&name);
    let ports = (0..n).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
    let cmds = instances(
        args,
        s,
        &write_config(args, s, p, &name, &dir)?,
        &dir,
        &ports,
    )?;
    let label = format!("containd ×{n}");
    let outputs = s.topics.outputs(&name);
    let mut sys = System::spawn_all(&label, cmds, outputs, s.topics.rate(&name))?;
    say(format!("{label}: draining the {}-signal backlog", s.n));
    let want = p.spec.totals(0..s.n as usize);
    let zero = vec![0; want.len()];
    let throughput = measure::drain(&s.kafka, &mut sys, &zero, &want, Duration::from_secs(120))?;
    // Anything produced twice arrives within moments of the rest.
    std::thread::sleep(Duration::from_secs(3));
    let extra = sys
        .counts(&s.kafka)?
        .iter()
        .zip(&want)
        .map(|(c, w)| c.saturating_sub(*w))
        .sum();
    let per_instance = ports
        .iter()
        .map(|&port| consumed(port))
        .collect::<Result<_>>()?;
    let peak_rss_kib = sys.peak_rss_kib()?;
    let status = sys.stop()?;
    if !status.success() {
        say(format!("{label} exited with {status}"));
    }
    say(format!(
        "{label}: {:.0} signals/s, {:.1} CPU s per 1M, {extra} extra output records",
        throughput.rate(),
        throughput.cpu_per_million()
    ));
    Ok(ScaleResult {
        instances: n,
        throughput,
        per_instance,
        peak_rss_kib,
        extra,
    })
}

/// The config of one instance count: the preloaded topic only, its own outputs and group.
fn write_config(
    args: &RunArgs,
    s: &Setup,
    p: &Prepared,
    name: &str,
    dir: &Path,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    workload::write_config(
        dir,
        &args.repo,
        &s.topics,
        &ConfigParams {
            system: name,
            inputs: std::slice::from_ref(&s.topics.preload),
            bootstrap: &s.kafka.bootstrap,
            metrics_port: free_port()?,
            format: args.format,
            fetch_wait_ms: args.fetch_wait_ms,
            workers: args.workers,
            synthetic: &p.synthetic,
        },
    )
}

/// One daemon command per metrics port, all on one config.
fn instances(
    args: &RunArgs,
    s: &Setup,
    config: &Path,
    dir: &Path,
    ports: &[u16],
) -> Result<Vec<(Command, PathBuf)>> {
    let bin = containd_bin(args, s);
    let mut cmds = Vec::with_capacity(ports.len());
    for (i, port) in ports.iter().enumerate() {
        let mut cmd = Command::new(&bin);
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .env("CONTAIND__TELEMETRY__LISTEN", format!("127.0.0.1:{port}"));
        cmds.push((cmd, dir.join(format!("containd-{i}.log"))));
    }
    Ok(cmds)
}

/// `containd_signals_consumed_total` of the instance serving metrics on `port`.
fn consumed(port: u16) -> Result<u64> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("containd_signals_consumed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Ok(total as u64)
}
