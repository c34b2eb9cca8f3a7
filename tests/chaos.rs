//! The chaos suite (`scripts/chaos`; ignored by the normal suite, it runs for minutes): a
//! broker of its own (nisshi, sqlite storage) and three daemons consuming one stream of valid
//! signals interleaved with mutated and poison records, while the daemons are killed with
//! SIGKILL at random points and restarted (a rebalance storm) and the broker is killed and
//! restarted, some outages longer than the session timeout. Then, against a clean offline
//! decision of the same stream:
//!
//! - no command id is missing and none is extra; every duplicate is byte-identical;
//! - every input record has a decision or a dead letter (consumed = decided + dead-lettered);
//! - each daemon's RSS stayed bounded, and the log volume per input record too.
//!
//! Scale with CHAOS_SIGNALS, CHAOS_MUTATED, CHAOS_KILLS, CHAOS_BROKER_KILLS.

mod common;

use common::*;
use containd::offline::OfflineDecider;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (no dependency, same stream for the same seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The input stream: (key, payload, is_valid_original).
fn stream(signals: usize, mutated: usize, rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let samples = sample_signals();
    let mut out = Vec::with_capacity(signals + mutated);
    let mut valid: Vec<(String, Vec<u8>)> = Vec::with_capacity(signals);
    for i in 0..signals {
        // Policy change (opaque subject), credential rotated (opaque), PAM (uri): each with a
        // subject of its own, so no decision depends on another's timing.
        let mut s = samples[[5, 2, 3][i % 3]].clone();
        s.id = format!("chaos-{i}");
        let subject = format!("chaos-subject-{i}");
        match s.subject.format.as_str() {
            "uri" => s
                .subject
                .identifiers
                .insert("uri".into(), format!("wimse://acme.example/{subject}")),
            _ => s.subject.identifiers.insert("id".into(), subject.clone()),
        };
        valid.push((subject, serde_json::to_vec(&s).unwrap()));
    }
    let per_valid = mutated / signals.max(1);
    for (key, bytes) in valid {
        for _ in 0..per_valid {
            let mut m = bytes.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len());
                m[at] = rng.next() as u8;
            }
            out.push((key.clone(), m));
        }
        out.push((key, bytes));
    }
    // Poison: oversized, deep nesting, an Avro allocation bomb on a JSON topic, empty.
    out.push(("poison-1".into(), vec![b'['; 900_000]));
    out.push(("poison-2".into(), b"{\"id\":".repeat(100_000)));
    out.push((
        "poison-3".into(),
        vec![
            0xc3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x80, 0x80, 0x80, 0x80, 0x08,
        ],
    ));
    out.push(("poison-4".into(), Vec::new()));
    out
}

/// Command ids and decision count a single clean run gives the same stream.
fn expected(config: &Path, rules: &Path, stream: &[(String, Vec<u8>)]) -> BTreeSet<String> {
    let mut d = OfflineDecider::load(config, rules).unwrap();
    let mut ids = BTreeSet::new();
    for (i, (_, bytes)) in stream.iter().enumerate() {
        if let Ok(decision) = d.decide_json(bytes, i as i64) {
            ids.extend(decision.commands.into_iter().map(|c| c.command_id));
        }
    }
    ids
}

async fn produce_all(p: &FutureProducer, topic: &str, stream: &[(String, Vec<u8>)]) {
    for chunk in stream.chunks(500) {
        let sends: Vec<_> = chunk
            .iter()
            .map(|(k, v)| {
                let r = FutureRecord::<str, [u8]>::to(topic).key(k).payload(v);
                p.send(r, Duration::from_secs(300))
            })
            .collect();
        for s in sends {
            let _ = s.await;
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run with scripts/chaos"]
async fn chaos() {
    let signals = env_or("CHAOS_SIGNALS", 50_000);
    let mutated = env_or("CHAOS_MUTATED", 50_000);
    let kills = env_or("CHAOS_KILLS", 20);
    let broker_kills = env_or("CHAOS_BROKER_KILLS", 5);
    let mut rng = Rng(0x5eed_c4a0);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::env::set_var("CONTAIND_TEST_BOOTSTRAP", format!("127.0.0.1:{port}"));
    let mut broker = Some(Broker::start(port, dir.path()));

    let topics = Topics::new(&unique("chaos"));
    create_topics(&all_topics(&topics)).await;
    let config = write_config(dir.path(), &topics, &unique("g"), "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "\"topic.metadata.refresh.interval.ms\" = \"1000\"",
        "\"topic.metadata.refresh.interval.ms\" = \"1000\"\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"",
    );
    std::fs::write(&config, text).unwrap();
    let input = stream(signals, mutated, &mut rng);
    let want = expected(&config, &dir.path().join("rules"), &input);
    eprintln!(
        "chaos: {} records ({signals} valid), {} command ids expected",
        input.len(),
        want.len()
    );

    // Three instances; each restart gets a config of its own (its own metrics port).
    let start = |n: usize| {
        let own = dir.path().join(format!("containd-{n}.toml"));
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "listen = \"127.0.0.1:",
            &format!("listen = \"127.0.0.1:{}\"\n# ", free_port()),
        );
        std::fs::write(&own, text).unwrap();
        Daemon::start(&own, &format!("containd-{n}.log"))
    };
    let mut daemons: Vec<Daemon> = (0..3).map(start).collect();
    let mut started = 3;
    let producer_task = {
        let topic = topics.signals.clone();
        let input = input.clone();
        tokio::spawn(async move { produce_all(&producer(), &topic, &input).await })
    };

    // Chaos while the stream is consumed.
    let mut peak_rss = 0u64;
    let (mut killed, mut broker_killed) = (0, 0);
    let chaos_until = Instant::now() + Duration::from_secs(env_or("CHAOS_SECONDS", 240) as u64);
    while Instant::now() < chaos_until && (killed < kills || broker_killed < broker_kills) {
        tokio::time::sleep(Duration::from_millis(2000 + rng.below(4000) as u64)).await;
        for d in &daemons {
            peak_rss = peak_rss.max(rss_kib(d.child.id()).unwrap_or(0));
        }
        if broker_killed < broker_kills && rng.below(3) == 0 {
            drop(broker.take());
            // Some outages outlast the 6 s session timeout.
            let down = [2, 4, 9, 15, 20][broker_killed % 5];
            tokio::time::sleep(Duration::from_secs(down)).await;
            broker = Some(Broker::start(port, dir.path()));
            broker_killed += 1;
            eprintln!("chaos: broker down {down}s ({broker_killed}/{broker_kills})");
        } else if killed < kills {
            let i = rng.below(daemons.len());
            daemons[i].kill9();
            daemons[i] = start(started);
            started += 1;
            killed += 1;
            eprintln!("chaos: kill -9 instance {i} ({killed}/{kills})");
        }
    }
    let _ = producer_task.await;

    // Quiet: read every output until nothing new comes for 20 s.
    let outputs: Vec<String> = [topics.decisions.clone(), topics.dead_letter.clone()]
        .into_iter()
        .chain(TARGETS.iter().map(|t| topics.target(t)))
        .collect();
    let records = read_until_idle(&outputs, Duration::from_secs(30), Duration::from_secs(1800));
    check(&records, &topics, &input, &want);
    for d in &daemons {
        peak_rss = peak_rss.max(rss_kib(d.child.id()).unwrap_or(0));
    }
    let log_bytes: u64 = (0..started)
        .filter_map(|n| std::fs::metadata(dir.path().join(format!("containd-{n}.log"))).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "chaos: {killed} kill -9, {broker_killed} broker outages, peak RSS {} MiB, {} KiB of logs for {} records",
        peak_rss / 1024,
        log_bytes / 1024,
        input.len()
    );
    assert!(
        peak_rss < 1024 * 1024,
        "RSS stays under 1 GiB: {peak_rss} KiB"
    );
    assert!(
        log_bytes < 200 * input.len() as u64,
        "logs grow by less than 200 bytes per record: {log_bytes}"
    );
}

/// The promises, from the outputs alone.
fn check(
    records: &[Record],
    topics: &Topics,
    input: &[(String, Vec<u8>)],
    want: &BTreeSet<String>,
) {
    let mut by_id: HashMap<String, Vec<u8>> = HashMap::new();
    let mut duplicates = 0;
    for (r, c) in commands(records, topics) {
        match by_id.get(&c.command_id) {
            Some(first) => {
                duplicates += 1;
                assert_eq!(first, &r.payload, "duplicate {} differs", c.command_id);
            }
            None => {
                by_id.insert(c.command_id, r.payload);
            }
        }
    }
    let got: BTreeSet<String> = by_id.into_keys().collect();
    let missing: Vec<&String> = want.difference(&got).take(5).collect();
    let extra: Vec<&String> = got.difference(want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );

    // Every input position answered by a decision or a dead letter.
    let mut answered: HashSet<(i32, i64)> = decisions(records, topics)
        .into_iter()
        .map(|d| (d.source.partition, d.source.offset))
        .collect();
    for r in records.iter().filter(|r| r.topic == topics.dead_letter) {
        let p = r
            .headers
            .get("containd.source.partition")
            .and_then(|v| v.parse().ok());
        let o = r
            .headers
            .get("containd.source.offset")
            .and_then(|v| v.parse().ok());
        if let (Some(p), Some(o)) = (p, o) {
            answered.insert((p, o));
        }
    }
    assert_eq!(
        answered.len(),
        input.len(),
        "consumed = decided + dead-lettered"
    );
    eprintln!(
        "chaos: {} command ids, none missing or extra, {duplicates} byte-identical duplicates; {} records answered",
        got.len(),
        answered.len()
    );
}
