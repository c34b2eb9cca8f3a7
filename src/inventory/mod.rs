//! The NHI inventory: who an identity is (kind, owner, criticality, environment) and where it
//! has access. Read from a compacted topic (`tail`), kept in memory, and looked up for every
//! signal so rules can use `identity.*` and blast-radius actions know every target to reach.
//!
//! Memory matters (a million identities must fit in about 230 bytes each, docs/benchmarks.md):
//! - an identity is two pointers behind one `Arc`: its own strings (id, aliases, principal
//!   ids) packed in one allocation (`strings`), and a profile it shares with identities like
//!   it (kind, criticality, owner and contact, environment, target names; `identity`);
//! - the indexes by id and alias (`index`) hold only that `Arc`, reading each key from the
//!   identity, so no name is stored twice;
//! - profiles and the names in them are interned: thousands of identities share a handful.

mod identity;
mod index;
mod strings;
pub mod tail;

pub use identity::Identity;

use crate::signal::Subject;
use hashbrown::HashSet;
use identity::Profile;
use index::Index;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};

/// The record on the inventory topic: mirrors `schemas/identity_record.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRecord {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub kind: IdentityKind,
    #[serde(default)]
    pub owner: Option<Owner>,
    #[serde(default)]
    pub criticality: Option<Criticality>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub access: Vec<Access>,
    /// Break-glass, root, an adapter's own credential: drastic actions on it are held, never
    /// issued automatically (docs/safety.md).
    #[serde(default)]
    pub protected: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    ServiceAccount,
    ApiKey,
    OauthClient,
    Workload,
    AiAgent,
    Human,
    #[default]
    Other,
}

impl IdentityKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::ServiceAccount => "service_account",
            Self::ApiKey => "api_key",
            Self::OauthClient => "oauth_client",
            Self::Workload => "workload",
            Self::AiAgent => "ai_agent",
            Self::Human => "human",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criticality {
    Low,
    Medium,
    High,
    Critical,
}

impl Criticality {
    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub team: String,
    #[serde(default)]
    pub contact: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    pub target: String,
    pub principal_id: String,
}

/// Interned names: thousands of identities share a handful of teams, environments and targets.
#[derive(Debug, Default)]
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(v) = self.0.get(s) {
            return v.clone();
        }
        let v: Arc<str> = Arc::from(s);
        self.0.insert(v.clone());
        v
    }
}

/// Interned profiles, forgotten once no identity uses them: unlike names, combinations can
/// churn with the records.
#[derive(Debug, Default)]
struct Profiles {
    set: HashSet<Arc<Profile>>,
    /// The set's size after the last sweep; sweeping again only once it doubles keeps the
    /// cost per new profile constant.
    swept_len: usize,
}

impl Profiles {
    fn get(&mut self, profile: Profile) -> Arc<Profile> {
        if let Some(v) = self.set.get(&profile) {
            return v.clone();
        }
        if self.set.len() >= 2 * self.swept_len.max(32) {
            self.set.retain(|p| Arc::strong_count(p) > 1);
            self.swept_len = self.set.len();
        }
        let v = Arc::new(profile);
        self.set.insert(v.clone());
        v
    }

    /// `left` has just left the inventory: if only it and this set hold its profile, no
    /// identity uses it any more. (If another that left earlier is still being read
    /// elsewhere, the count cannot tell, and a later sweep forgets the profile instead.)
    fn release(&mut self, left: &Identity) {
        if Arc::strong_count(left.profile()) == 2 {
            self.set.remove(left.profile());
        }
    }
}

/// All known identities, by id and by alias.
#[derive(Debug, Default)]
pub struct Inventory {
    index: Index,
    names: Interner,
    profiles: Profiles,
}

pub type SharedInventory = Arc<RwLock<Inventory>>;

impl Inventory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds or replaces a record; its old aliases stop resolving.
    pub fn upsert(&mut self, record: IdentityRecord) {
        self.remove(&record.id);
        let names = &mut self.names;
        let profile = self.profiles.get(Profile::of(&record, |s| names.get(s)));
        self.index.insert(Arc::new(Identity::new(&record, profile)));
    }

    /// Removes an identity (a tombstone on the topic).
    pub fn remove(&mut self, id: &str) {
        if let Some(old) = self.index.remove(id) {
            self.profiles.release(&old);
        }
    }

    /// The identity a subject names: by its canonical id first, then by any other identifier
    /// it carries (complex members, aliases); ids win over aliases.
    pub fn lookup(&self, subject: &Subject, subject_id: &str) -> Option<Arc<Identity>> {
        if let Some(found) = self.get(subject_id) {
            return Some(found);
        }
        let members = subject.members();
        let others = members
            .iter()
            .filter_map(|(_, m)| m.and_then(|m| m.id()))
            .chain(subject.aliases.iter().filter_map(|a| a.id()));
        for id in others {
            if let Some(found) = self.get(&id) {
                return Some(found);
            }
        }
        None
    }

    /// By id or alias.
    pub fn get(&self, name: &str) -> Option<Arc<Identity>> {
        self.index.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, aliases: &[&str], access: &[(&str, &str)]) -> IdentityRecord {
        IdentityRecord {
            id: id.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            kind: IdentityKind::ServiceAccount,
            owner: Some(Owner {
                team: "payments".into(),
                contact: None,
            }),
            criticality: Some(Criticality::High),
            environment: Some("prod".into()),
            access: access
                .iter()
                .map(|(t, p)| Access {
                    target: t.to_string(),
                    principal_id: p.to_string(),
                })
                .collect(),
            protected: false,
        }
    }

    fn opaque(id: &str) -> Subject {
        serde_json::from_value(serde_json::json!({"format": "opaque", "identifiers": {"id": id}}))
            .unwrap()
    }

    fn id_of(inv: &Inventory, name: &str) -> Option<String> {
        inv.get(name).map(|i| i.id().to_string())
    }

    #[test]
    fn looks_up_by_id_and_alias_and_forgets_replaced_aliases() {
        let mut inv = Inventory::new();
        inv.upsert(record("svc-a", &["client-123"], &[("aws", "arn:a")]));
        assert_eq!(inv.lookup(&opaque("svc-a"), "svc-a").unwrap().id(), "svc-a");
        let by_alias = inv.lookup(&opaque("client-123"), "client-123").unwrap();
        assert_eq!(by_alias.id(), "svc-a");
        assert_eq!(by_alias.principals_at("aws").collect::<Vec<_>>(), ["arn:a"]);

        inv.upsert(record("svc-a", &["client-456"], &[]));
        assert!(inv.lookup(&opaque("client-123"), "client-123").is_none());
        assert!(inv.get("client-456").is_some());
        inv.remove("svc-a");
        assert!(inv.get("client-456").is_none());
        assert!(inv.is_empty());
    }

    #[test]
    fn ids_win_over_aliases() {
        let mut inv = Inventory::new();
        inv.upsert(record("svc-a", &["svc-b", "x"], &[]));
        inv.upsert(record("svc-b", &["svc-a"], &[]));
        assert_eq!(id_of(&inv, "svc-a").as_deref(), Some("svc-a"));
        assert_eq!(id_of(&inv, "svc-b").as_deref(), Some("svc-b"));
        inv.remove("svc-b");
        assert_eq!(id_of(&inv, "svc-b").as_deref(), Some("svc-a"));
    }

    #[test]
    fn an_alias_named_again_moves_and_its_old_holder_keeps_the_rest() {
        let mut inv = Inventory::new();
        inv.upsert(record("svc-a", &["first", "second", "third"], &[]));
        inv.upsert(record("svc-b", &["x", "second"], &[]));
        inv.upsert(record("svc-c", &["first"], &[]));
        assert_eq!(id_of(&inv, "first").as_deref(), Some("svc-c"));
        assert_eq!(id_of(&inv, "second").as_deref(), Some("svc-b"));
        assert_eq!(id_of(&inv, "third").as_deref(), Some("svc-a"));
        // svc-a's record still lists what it lost; only the index moved.
        assert_eq!(inv.get("svc-a").unwrap().aliases().count(), 3);

        // Removing the old holder leaves the aliases others took.
        inv.remove("svc-a");
        assert_eq!(id_of(&inv, "first").as_deref(), Some("svc-c"));
        assert_eq!(id_of(&inv, "second").as_deref(), Some("svc-b"));
        assert_eq!(id_of(&inv, "third"), None);
        // Removing the new holder does not hand an alias back.
        inv.upsert(record("svc-a", &["first"], &[]));
        inv.upsert(record("svc-c", &["other"], &[]));
        assert_eq!(id_of(&inv, "first").as_deref(), Some("svc-a"));
        inv.remove("svc-b");
        assert_eq!(id_of(&inv, "second"), None);
        assert_eq!(id_of(&inv, "x"), None);
        assert_eq!(inv.len(), 2);
    }

    #[test]
    fn many_aliases_repeated_ones_and_the_id_among_them() {
        let mut inv = Inventory::new();
        let names: Vec<String> = (0..200).map(|i| format!("alias-{i}")).collect();
        let mut aliases: Vec<&str> = names.iter().map(String::as_str).collect();
        aliases.extend(["svc-a", "alias-0", "alias-7"]);
        inv.upsert(record("svc-a", &aliases, &[]));
        for name in &names {
            assert_eq!(id_of(&inv, name).as_deref(), Some("svc-a"), "{name}");
        }
        inv.upsert(record("svc-a", &[], &[]));
        assert!(names.iter().all(|n| inv.get(n).is_none()));
        assert_eq!(id_of(&inv, "svc-a").as_deref(), Some("svc-a"));
    }

    #[test]
    fn a_record_reads_back_as_it_was_given() {
        let mut inv = Inventory::new();
        let long = "arn:aws:iam::111122223333:role/".repeat(200);
        let mut r = record(
            "svc-a",
            &["a1", "", "a3"],
            &[("aws", &long), ("okta", ""), ("aws", "2")],
        );
        r.owner.as_mut().unwrap().contact = Some("pay@acme.example".into());
        r.protected = true;
        inv.upsert(r.clone());
        let a = inv.get("svc-a").unwrap();
        assert_eq!(*a, Identity::from_record(&r));
        assert_eq!(a.aliases().collect::<Vec<_>>(), ["a1", "", "a3"]);
        assert_eq!(
            a.principals_at("aws").collect::<Vec<_>>(),
            [long.as_str(), "2"]
        );
        assert_eq!(a.access().nth(1), Some(("okta", "")));
        assert_eq!(a.owner_contact(), Some("pay@acme.example"));
        assert!(a.known() && a.protected() && a.has_owner());
        assert_eq!(a.kind(), IdentityKind::ServiceAccount);
        assert_eq!(a.criticality(), Some(Criticality::High));
        assert_eq!(a.environment(), Some("prod"));
        // An empty alias resolves like any other name.
        assert_eq!(id_of(&inv, "").as_deref(), Some("svc-a"));
    }

    #[test]
    fn a_bare_record_has_no_optional_fields() {
        let bare = IdentityRecord {
            id: "bare".into(),
            aliases: vec![],
            kind: IdentityKind::default(),
            owner: None,
            criticality: None,
            environment: None,
            access: vec![],
            protected: false,
        };
        let i = Identity::from_record(&bare);
        assert_eq!(
            (i.id(), i.aliases().count(), i.access().count()),
            ("bare", 0, 0)
        );
        assert_eq!(
            (i.owner_team(), i.owner_contact(), i.environment()),
            (None, None, None)
        );
        assert_eq!(i.criticality(), None);
        assert!(i.known() && !i.protected());
    }

    #[test]
    fn a_complex_subject_is_found_by_any_member() {
        let mut inv = Inventory::new();
        inv.upsert(record("dev-9", &[], &[]));
        let subject: Subject = serde_json::from_value(serde_json::json!({
            "format": "complex",
            "application": {"format": "opaque", "identifiers": {"id": "unknown-app"}},
            "device": {"format": "opaque", "identifiers": {"id": "dev-9"}}}))
        .unwrap();
        assert_eq!(inv.lookup(&subject, "unknown-app").unwrap().id(), "dev-9");
    }

    #[test]
    fn unknown_and_ownerless_identities_read_as_such() {
        let unknown = Identity::unknown();
        assert!(!unknown.known());
        assert_eq!(unknown.to_json()["kind"], "unknown");
        let mut inv = Inventory::new();
        let mut r = record("svc-b", &[], &[]);
        r.owner = None;
        inv.upsert(r);
        let b = inv.get("svc-b").unwrap();
        assert!(!b.has_owner());
        assert_eq!(b.to_json()["has_owner"], false);
        assert_eq!(b.to_json()["owner"], serde_json::Value::Null);
    }

    #[test]
    fn names_and_profiles_are_interned_while_used() {
        let mut inv = Inventory::new();
        inv.upsert(record("a", &[], &[("aws", "1")]));
        inv.upsert(record("b", &[], &[("aws", "2")]));
        inv.upsert(record("c", &[], &[("aws", "3"), ("okta", "3")]));
        let (a, b, c) = (
            inv.get("a").unwrap(),
            inv.get("b").unwrap(),
            inv.get("c").unwrap(),
        );
        assert!(Arc::ptr_eq(a.profile(), b.profile()));
        let target = |i: &Identity| i.access().next().unwrap().0.as_ptr();
        assert_eq!(target(&a), target(&c));
        assert_eq!(
            a.owner_team().unwrap().as_ptr(),
            c.owner_team().unwrap().as_ptr()
        );
        assert_eq!(inv.profiles.set.len(), 2);
        inv.remove("c");
        assert_eq!(inv.profiles.set.len(), 1);
        inv.remove("b");
        assert_eq!(inv.profiles.set.len(), 1, "a still uses it");
        // b left but is still being read: removing a cannot tell that nobody in the inventory
        // uses the profile, so a sweep after b's last reader is done forgets it.
        inv.remove("a");
        assert_eq!(b.principals_at("aws").collect::<Vec<_>>(), ["2"]);
        assert_eq!(inv.profiles.set.len(), 1);
        drop((a, b));
        for i in 0..64 {
            let mut r = record(&format!("env-{i}"), &[], &[]);
            r.environment = Some(format!("env-{i}"));
            inv.upsert(r);
        }
        assert_eq!(inv.profiles.set.len(), 64);
        assert!(inv
            .profiles
            .set
            .iter()
            .all(|p| p.environment.as_deref() != Some("prod")));
    }
}
