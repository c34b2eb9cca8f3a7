//! An identity as held in memory: what it shares with many others (its profile) behind one
//! pointer, and what is its own (id, aliases, principal ids) in one packed allocation.

use super::strings::Strings;
use super::{Criticality, IdentityKind, IdentityRecord};
use std::sync::{Arc, OnceLock};

/// An identity as held in memory. `Identity::unknown()` stands for a subject the inventory
/// does not know, so rules and decisions always have something to read.
///
/// Two pointers wide: a million of these must fit (docs/benchmarks.md), so the fields are
/// read through methods rather than stored one by one.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    profile: Arc<Profile>,
    strings: Strings,
}

/// What many identities have in common: thousands of identities share a handful of kinds,
/// owners, environments and target lists, so the inventory interns whole profiles.
///
/// The owner's contact lives here with the team rather than with the identity: it is the
/// team's address in practice, and an identity with a contact of its own only costs a
/// profile of its own.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct Profile {
    pub(super) known: bool,
    pub(super) kind: IdentityKind,
    pub(super) criticality: Option<Criticality>,
    pub(super) protected: bool,
    /// The team and its contact.
    pub(super) owner: Option<(Arc<str>, Option<Arc<str>>)>,
    pub(super) environment: Option<Arc<str>>,
    /// The target of each access entry, in inventory order; the principal ids are the
    /// identity's own strings, in the same order.
    pub(super) targets: Box<[Arc<str>]>,
}

impl Profile {
    /// A record's profile, its names made by `name` (the inventory passes its interner).
    pub(super) fn of(record: &IdentityRecord, mut name: impl FnMut(&str) -> Arc<str>) -> Self {
        Self {
            known: true,
            kind: record.kind,
            criticality: record.criticality,
            protected: record.protected,
            owner: record.owner.as_ref().map(|o| {
                let contact = o.contact.as_deref().map(&mut name);
                (name(&o.team), contact)
            }),
            environment: record.environment.as_deref().map(&mut name),
            targets: record.access.iter().map(|a| name(&a.target)).collect(),
        }
    }
}

impl Identity {
    /// The identity a record describes, sharing `profile` with others like it.
    pub(super) fn new(record: &IdentityRecord, profile: Arc<Profile>) -> Self {
        let strings = Strings::pack(
            &record.id,
            record.aliases.iter().map(String::as_str),
            record.access.iter().map(|a| a.principal_id.as_str()),
        );
        Self { profile, strings }
    }

    /// The identity a record describes, on its own: for tests and probes that need one
    /// without an inventory.
    pub fn from_record(record: &IdentityRecord) -> Self {
        Self::new(
            record,
            Arc::new(Profile::of(record, |s: &str| Arc::from(s))),
        )
    }

    /// The stand-in for a subject without an inventory record.
    pub fn unknown() -> Arc<Identity> {
        static UNKNOWN: OnceLock<Arc<Identity>> = OnceLock::new();
        UNKNOWN
            .get_or_init(|| {
                let profile = Profile {
                    known: false,
                    kind: IdentityKind::Other,
                    criticality: None,
                    protected: false,
                    owner: None,
                    environment: None,
                    targets: Box::new([]),
                };
                let strings = Strings::pack("", std::iter::empty(), std::iter::empty());
                Arc::new(Identity {
                    profile: Arc::new(profile),
                    strings,
                })
            })
            .clone()
    }

    pub fn id(&self) -> &str {
        self.strings.id()
    }

    pub fn aliases(&self) -> impl Iterator<Item = &str> + Clone {
        self.strings.aliases()
    }

    pub fn kind(&self) -> IdentityKind {
        self.profile.kind
    }

    /// False only for [`Identity::unknown`].
    pub fn known(&self) -> bool {
        self.profile.known
    }

    pub fn owner_team(&self) -> Option<&str> {
        self.profile.owner.as_ref().map(|(team, _)| &**team)
    }

    pub fn owner_contact(&self) -> Option<&str> {
        self.profile.owner.as_ref()?.1.as_deref()
    }

    pub fn has_owner(&self) -> bool {
        self.profile.owner.is_some()
    }

    pub fn criticality(&self) -> Option<Criticality> {
        self.profile.criticality
    }

    pub fn environment(&self) -> Option<&str> {
        self.profile.environment.as_deref()
    }

    /// Drastic actions on it are held (`IdentityRecord::protected`).
    pub fn protected(&self) -> bool {
        self.profile.protected
    }

    /// (target name, principal id at that target), in inventory order.
    pub fn access(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        let targets = self.profile.targets.iter().map(|t| &**t);
        targets.zip(self.strings.principals())
    }

    /// The principal ids this identity has at `target`, in inventory order.
    pub fn principals_at<'a>(&'a self, target: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.access()
            .filter(move |(t, _)| *t == target)
            .map(|(_, p)| p)
    }

    pub(super) fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    /// The JSON shape rules see as `identity` (docs/rules.md).
    pub fn to_json(&self) -> serde_json::Value {
        let owner = self
            .owner_team()
            .map(|team| serde_json::json!({"team": team, "contact": self.owner_contact()}));
        serde_json::json!({
            "known": self.known(),
            "id": self.id(),
            "aliases": self.aliases().collect::<Vec<_>>(),
            "kind": if self.known() { self.kind().name() } else { "unknown" },
            "owner": owner,
            "has_owner": self.has_owner(),
            "protected": self.protected(),
            "criticality": self.criticality().map(Criticality::name),
            "environment": self.environment(),
            "access": self.access()
                .map(|(t, p)| serde_json::json!({"target": t, "principal_id": p}))
                .collect::<Vec<_>>(),
        })
    }
}

/// Reads like the record it came from, not like its packed layout.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id())
            .field("aliases", &self.aliases().collect::<Vec<_>>())
            .field("access", &self.access().collect::<Vec<_>>())
            .field("profile", &self.profile)
            .finish()
    }
}
