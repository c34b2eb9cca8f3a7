//! Inventory and state at scale: memory for 1,000,000 identities and for 1,000,000 subjects
//! with state, measured as the growth of the process's resident set; lookup and decide costs
//! with criterion. `cargo bench --bench inventory` (docs/benchmarks.md has the figures).

use containd::inventory::{Access, Criticality, IdentityKind, IdentityRecord, Inventory, Owner};
use containd::signal::Subject;
use containd::state::{CommandId, Mark, NewHit, NewIssue, Retention, StateStore, StateUpdate};
use criterion::{criterion_group, criterion_main, Criterion};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// A million in release builds (`cargo bench`); fewer in the debug build `cargo test
/// --all-targets` compiles the benches into.
const IDENTITIES: usize = if cfg!(debug_assertions) {
    20_000
} else {
    1_000_000
};

/// Counts the bytes the process has allocated and not freed (as requested, so without the
/// allocator's own headers and rounding) and how many allocations are live. Unlike the
/// resident set, this does not depend on what an earlier measurement freed and the allocator
/// kept for reuse.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Relaxed);
        LIVE_ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        LIVE_ALLOCS.fetch_sub(1, Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// (live bytes, live allocations) now.
fn heap() -> (usize, usize) {
    (LIVE_BYTES.load(Relaxed), LIVE_ALLOCS.load(Relaxed))
}

/// What was allocated since `before`, per item: "N bytes in M allocations".
fn heap_per(before: (usize, usize), items: usize) -> String {
    let (bytes, allocs) = heap();
    let items = items.max(1) as f64;
    format!(
        "{:.0} bytes in {:.1} allocations per item, as requested",
        bytes.saturating_sub(before.0) as f64 / items,
        allocs.saturating_sub(before.1) as f64 / items
    )
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A realistic record: one alias, an owner on most, three targets with ARN-like principals.
fn record(i: usize) -> IdentityRecord {
    IdentityRecord {
        id: format!("svc-{i:07}"),
        aliases: vec![format!("client-{i:07}.apps.acme.example")],
        kind: IdentityKind::ServiceAccount,
        owner: (!i.is_multiple_of(10)).then(|| Owner {
            team: format!("team-{}", i % 200),
            contact: Some(format!("team-{}@acme.example", i % 200)),
        }),
        criticality: Some(Criticality::High),
        environment: Some(["prod", "staging", "dev"][i % 3].into()),
        access: vec![
            Access {
                target: "aws".into(),
                principal_id: format!("arn:aws:iam::111122223333:role/svc-{i:07}"),
            },
            Access {
                target: "github-actions".into(),
                principal_id: format!("repo:acme/svc-{i:07}"),
            },
            Access {
                target: "okta".into(),
                principal_id: format!("0oa{i:017}"),
            },
        ],
        protected: false,
    }
}

fn opaque(id: &str) -> Subject {
    serde_json::from_value(serde_json::json!({"format": "opaque", "identifiers": {"id": id}}))
        .unwrap()
}

fn inventory(c: &mut Criterion) {
    let before = rss_bytes();
    let heap_before = heap();
    let mut inv = Inventory::new();
    for i in 0..IDENTITIES {
        inv.upsert(record(i));
    }
    let grown = rss_bytes().saturating_sub(before);
    println!(
        "inventory: {} identities, resident set grew {:.0} MiB ({} bytes per identity); {}",
        inv.len(),
        grown as f64 / (1 << 20) as f64,
        grown / IDENTITIES as u64,
        heap_per(heap_before, IDENTITIES)
    );
    let hit = opaque("client-0500000.apps.acme.example");
    let miss = opaque("nobody");
    c.bench_function("inventory/lookup_alias_hit_1M", |b| {
        b.iter(|| black_box(inv.lookup(black_box(&hit), "client-0500000.apps.acme.example")))
    });
    c.bench_function("inventory/lookup_miss_1M", |b| {
        b.iter(|| black_box(inv.lookup(black_box(&miss), "nobody")))
    });
    c.bench_function("inventory/upsert_1M", |b| {
        let r = record(42);
        b.iter(|| inv.upsert(black_box(r.clone())))
    });
}

fn state(c: &mut Criterion) {
    let before = rss_bytes();
    let heap_before = heap();
    let mut store = StateStore::new(Retention {
        margin: Duration::from_secs(3600),
        max_entries: 1024,
    });
    // Each subject: two window hits and one issued (held) command, 16 partitions.
    for i in 0..IDENTITIES {
        let subject = format!("svc-{i:07}");
        let p = (i % 16) as i32;
        let hit = StateUpdate {
            hits: vec![NewHit {
                rule: "repeated-medium-risk-revoke".into(),
                event_type: "https://schemas.openid.net/secevent/caep/event-type/risk-level-change"
                    .into(),
                within: Duration::from_secs(600),
                signal_id: format!("sig-{i:07}"),
            }],
            ..StateUpdate::default()
        };
        store.apply(
            "identity.signals.v1",
            p,
            &subject,
            Mark {
                offset: 2 * i as i64,
                at: 0,
            },
            &hit,
        );
        let issued = StateUpdate {
            issued: vec![NewIssue {
                target: "okta".into(),
                action: "block_session".into(),
                command_id: CommandId::from((i as u128).to_be_bytes()),
                holds: true,
                expires_at: None,
                remember_for: Duration::from_secs(900),
                // A device block's cause, as the device pack records it.
                cause: containd::state::Cause {
                    rule: "device-noncompliant-step-up".into(),
                    event_type:
                        "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change"
                            .into(),
                    occurred_at: 1,
                    signal: None,
                object: Some(format!("dev-{i}").into()),
                    principal: None,
                },
                restore_on_expiry: None,
            }],
            ..hit
        };
        store.apply(
            "identity.signals.v1",
            p,
            &subject,
            Mark {
                offset: 2 * i as i64 + 1,
                at: 1,
            },
            &issued,
        );
    }
    let grown = rss_bytes().saturating_sub(before);
    let (_, subjects, entries) = store.size();
    println!(
        "state: {subjects} subjects, {entries} entries, resident set grew {:.0} MiB ({} bytes per subject); {}",
        grown as f64 / (1 << 20) as f64,
        grown / subjects.max(1) as u64,
        heap_per(heap_before, subjects)
    );
    let mut offset = 10 * IDENTITIES as i64;
    let update = StateUpdate {
        hits: vec![NewHit {
            rule: "r".into(),
            event_type: "urn:e".into(),
            within: Duration::from_secs(600),
            signal_id: "s".into(),
        }],
        ..StateUpdate::default()
    };
    let names: Vec<String> = (0..1024)
        .map(|i| format!("svc-{:07}", i * 16 + 3))
        .collect();
    c.bench_function("state/apply_hit_1M_subjects", |b| {
        b.iter(|| {
            offset += 1;
            let subject = &names[offset as usize % names.len()];
            black_box(store.apply(
                "identity.signals.v1",
                3,
                subject,
                Mark { offset, at: 2 },
                &update,
            ))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = inventory, state
}
criterion_main!(benches);
