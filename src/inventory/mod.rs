//! The NHI inventory: who an identity is (kind, owner, criticality, environment) and where it
//! has access. Read from a compacted topic (`tail`), kept in memory, and looked up for every
//! signal so rules can use `identity.*` and blast-radius actions know every target to reach.
//!
//! Memory matters (a million identities must fit): each identity is one `Arc`, its strings are
//! boxed, and the few distinct team, environment and target names are interned.

pub mod tail;

use crate::signal::Subject;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
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

/// An identity as held in memory. `Identity::unknown()` stands for a subject the inventory
/// does not know, so rules and decisions always have something to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: Box<str>,
    pub aliases: Box<[Box<str>]>,
    pub kind: IdentityKind,
    pub known: bool,
    pub owner_team: Option<Arc<str>>,
    pub owner_contact: Option<Box<str>>,
    pub criticality: Option<Criticality>,
    pub environment: Option<Arc<str>>,
    /// (target name, principal id at that target).
    pub access: Box<[(Arc<str>, Box<str>)]>,
    /// Drastic actions on it are held (`IdentityRecord::protected`).
    pub protected: bool,
}

impl Identity {
    /// The stand-in for a subject without an inventory record.
    pub fn unknown() -> Arc<Identity> {
        static UNKNOWN: std::sync::OnceLock<Arc<Identity>> = std::sync::OnceLock::new();
        UNKNOWN
            .get_or_init(|| {
                Arc::new(Identity {
                    id: "".into(),
                    aliases: Box::new([]),
                    kind: IdentityKind::Other,
                    known: false,
                    owner_team: None,
                    owner_contact: None,
                    criticality: None,
                    environment: None,
                    access: Box::new([]),
                    protected: false,
                })
            })
            .clone()
    }

    pub fn has_owner(&self) -> bool {
        self.owner_team.is_some()
    }

    /// The principal ids this identity has at `target`, in inventory order.
    pub fn principals_at<'a>(&'a self, target: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.access
            .iter()
            .filter(move |(t, _)| &**t == target)
            .map(|(_, p)| &**p)
    }

    /// The JSON shape rules see as `identity` (docs/rules.md).
    pub fn to_json(&self) -> serde_json::Value {
        let owner = self.owner_team.as_ref().map(
            |team| serde_json::json!({"team": &**team, "contact": self.owner_contact.as_deref()}),
        );
        serde_json::json!({
            "known": self.known,
            "id": &*self.id,
            "aliases": self.aliases.iter().map(|a| &**a).collect::<Vec<_>>(),
            "kind": if self.known { self.kind.name() } else { "unknown" },
            "owner": owner,
            "has_owner": self.has_owner(),
            "protected": self.protected,
            "criticality": self.criticality.map(Criticality::name),
            "environment": self.environment.as_deref(),
            "access": self.access.iter()
                .map(|(t, p)| serde_json::json!({"target": &**t, "principal_id": &**p}))
                .collect::<Vec<_>>(),
        })
    }
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

/// All known identities, by id and by alias.
#[derive(Debug, Default)]
pub struct Inventory {
    by_id: HashMap<Box<str>, Arc<Identity>>,
    by_alias: HashMap<Box<str>, Arc<Identity>>,
    names: Interner,
}

pub type SharedInventory = Arc<RwLock<Inventory>>;

impl Inventory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds or replaces a record; its old aliases stop resolving.
    pub fn upsert(&mut self, record: IdentityRecord) {
        self.remove(&record.id);
        let identity = Arc::new(Identity {
            id: record.id.as_str().into(),
            aliases: record.aliases.iter().map(|a| a.as_str().into()).collect(),
            kind: record.kind,
            known: true,
            owner_team: record.owner.as_ref().map(|o| self.names.get(&o.team)),
            owner_contact: record.owner.and_then(|o| o.contact).map(Into::into),
            criticality: record.criticality,
            environment: record.environment.as_deref().map(|e| self.names.get(e)),
            access: record
                .access
                .iter()
                .map(|a| (self.names.get(&a.target), a.principal_id.as_str().into()))
                .collect(),
            protected: record.protected,
        });
        for alias in identity.aliases.iter() {
            if **alias != *identity.id {
                self.by_alias.insert(alias.clone(), identity.clone());
            }
        }
        self.by_id.insert(record.id.into_boxed_str(), identity);
    }

    /// Removes an identity (a tombstone on the topic).
    pub fn remove(&mut self, id: &str) {
        if let Some(old) = self.by_id.remove(id) {
            for alias in old.aliases.iter() {
                if self
                    .by_alias
                    .get(alias)
                    .is_some_and(|i| Arc::ptr_eq(i, &old))
                {
                    self.by_alias.remove(alias);
                }
            }
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
        self.by_id
            .get(name)
            .or_else(|| self.by_alias.get(name))
            .cloned()
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

    #[test]
    fn looks_up_by_id_and_alias_and_forgets_replaced_aliases() {
        let mut inv = Inventory::new();
        inv.upsert(record("svc-a", &["client-123"], &[("aws", "arn:a")]));
        assert_eq!(&*inv.lookup(&opaque("svc-a"), "svc-a").unwrap().id, "svc-a");
        let by_alias = inv.lookup(&opaque("client-123"), "client-123").unwrap();
        assert_eq!(&*by_alias.id, "svc-a");
        assert_eq!(by_alias.principals_at("aws").collect::<Vec<_>>(), ["arn:a"]);

        inv.upsert(record("svc-a", &["client-456"], &[]));
        assert!(inv.lookup(&opaque("client-123"), "client-123").is_none());
        assert!(inv.get("client-456").is_some());
        inv.remove("svc-a");
        assert!(inv.get("client-456").is_none());
        assert!(inv.is_empty());
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
        assert_eq!(&*inv.lookup(&subject, "unknown-app").unwrap().id, "dev-9");
    }

    #[test]
    fn unknown_and_ownerless_identities_read_as_such() {
        let unknown = Identity::unknown();
        assert!(!unknown.known);
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
    fn names_are_interned() {
        let mut inv = Inventory::new();
        inv.upsert(record("a", &[], &[("aws", "1")]));
        inv.upsert(record("b", &[], &[("aws", "2")]));
        let (a, b) = (inv.get("a").unwrap(), inv.get("b").unwrap());
        assert!(Arc::ptr_eq(&a.access[0].0, &b.access[0].0));
        assert!(Arc::ptr_eq(
            a.owner_team.as_ref().unwrap(),
            b.owner_team.as_ref().unwrap()
        ));
    }
}
