//! The inventory's indexes by id and by alias: hash tables whose slots are one pointer to the
//! identity, the key read from the identity itself rather than copied beside it.
//!
//! A slot has to know which of its identity's names it is filed under, or a lookup could
//! match an identity under an alias it has lost to another. The id and the first alias are
//! fixed places in every identity, so those slots are the bare pointer; only later aliases,
//! rare, carry their position too.

use super::Identity;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use std::sync::Arc;

/// A table slot: the identity and the name it is filed under.
trait Slot {
    fn identity(&self) -> &Arc<Identity>;
    fn name(&self) -> &str;
}

#[derive(Debug)]
struct ById(Arc<Identity>);

#[derive(Debug)]
struct ByFirstAlias(Arc<Identity>);

/// An alias after the first, by its position among the identity's aliases.
#[derive(Debug)]
struct ByLaterAlias(Arc<Identity>, usize);

impl Slot for ById {
    fn identity(&self) -> &Arc<Identity> {
        &self.0
    }
    fn name(&self) -> &str {
        self.0.id()
    }
}

impl Slot for ByFirstAlias {
    fn identity(&self) -> &Arc<Identity> {
        &self.0
    }
    fn name(&self) -> &str {
        self.0.aliases().next().unwrap_or_default()
    }
}

impl Slot for ByLaterAlias {
    fn identity(&self) -> &Arc<Identity> {
        &self.0
    }
    fn name(&self) -> &str {
        self.0.aliases().nth(self.1).unwrap_or_default()
    }
}

/// Identities by id, and by each alias that is not its own id. An alias is filed under at
/// most one identity, the one that named it last.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// foldhash, seeded per process: the keys come from the operator's inventory topic, and
    /// a signal can only look names up, never add one, so it cannot crowd a table.
    hasher: DefaultHashBuilder,
    by_id: HashTable<ById>,
    by_first_alias: HashTable<ByFirstAlias>,
    by_later_alias: HashTable<ByLaterAlias>,
}

impl Index {
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// By id, else by alias: ids win. One hash serves all three tables.
    pub(super) fn get(&self, name: &str) -> Option<&Arc<Identity>> {
        let hash = self.hasher.hash_one(name);
        let named = |s: &dyn Slot| s.name() == name;
        (self.by_id.find(hash, |s| named(s)).map(Slot::identity))
            .or_else(|| {
                self.by_first_alias
                    .find(hash, |s| named(s))
                    .map(Slot::identity)
            })
            .or_else(|| {
                self.by_later_alias
                    .find(hash, |s| named(s))
                    .map(Slot::identity)
            })
    }

    /// Files an identity whose id is not in the index; its aliases are taken from whichever
    /// identity had them.
    pub(super) fn insert(&mut self, identity: Arc<Identity>) {
        for (position, alias) in identity.aliases().enumerate() {
            if alias == identity.id() {
                continue;
            }
            let hash = self.hasher.hash_one(alias);
            self.unfile_alias(hash, alias, None);
            let hasher = |s: &dyn Slot| self.hasher.hash_one(s.name());
            if position == 0 {
                let slot = ByFirstAlias(identity.clone());
                self.by_first_alias.insert_unique(hash, slot, |s| hasher(s));
            } else {
                let slot = ByLaterAlias(identity.clone(), position);
                self.by_later_alias.insert_unique(hash, slot, |s| hasher(s));
            }
        }
        let hash = self.hasher.hash_one(identity.id());
        let hasher = &self.hasher;
        let rehash = |s: &ById| hasher.hash_one(s.name());
        self.by_id.insert_unique(hash, ById(identity), rehash);
    }

    /// Takes out the identity with this id and the aliases still filed under it.
    pub(super) fn remove(&mut self, id: &str) -> Option<Arc<Identity>> {
        let hash = self.hasher.hash_one(id);
        let entry = self.by_id.find_entry(hash, |s| s.name() == id).ok()?;
        let old = entry.remove().0 .0;
        for alias in old.aliases().filter(|a| *a != old.id()) {
            let hash = self.hasher.hash_one(alias);
            self.unfile_alias(hash, alias, Some(&old));
        }
        Some(old)
    }

    /// Removes the slot `alias` is filed under, if it is `holder`'s (any holder's if `None`).
    fn unfile_alias(&mut self, hash: u64, alias: &str, holder: Option<&Arc<Identity>>) {
        let unfile =
            |s: &dyn Slot| s.name() == alias && holder.is_none_or(|h| Arc::ptr_eq(h, s.identity()));
        if let Ok(entry) = self.by_first_alias.find_entry(hash, |s| unfile(s)) {
            entry.remove();
        } else if let Ok(entry) = self.by_later_alias.find_entry(hash, |s| unfile(s)) {
            entry.remove();
        }
    }
}
