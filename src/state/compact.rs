//! How state keeps a million subjects small: the few distinct names its entries repeat are
//! shared, and its lists hold no unused slots while short (docs/benchmarks.md).

use serde::Deserialize;
use std::sync::Arc;

/// Shared copies of the few distinct names state entries repeat (targets, actions, event
/// types), so a million entries do not hold a million copies. Bounded: past the cap, names
/// are allocated per entry rather than remembered.
pub(super) fn intern(name: &str) -> Arc<str> {
    static NAMES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<Arc<str>>>> =
        std::sync::OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    let mut names = names.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = names.get(name) {
        return n.clone();
    }
    let n: Arc<str> = Arc::from(name);
    if names.len() < 10_000 {
        names.insert(n.clone());
    }
    n
}

pub(super) fn interned<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    Ok(intern(&s))
}

/// Pushes onto one of a subject's lists, growing it by one entry while it is short: most
/// subjects hold one or two entries per list, and `Vec`'s first growth reserves four (an
/// issued command is ~140 bytes, so three unused slots were 400 bytes per subject). Longer
/// lists grow as `Vec` does, so a busy subject does not copy its list per entry.
pub(super) fn push_small<T>(list: &mut Vec<T>, item: T) {
    if list.len() == list.capacity() && list.len() < 8 {
        list.reserve_exact(1);
    }
    list.push(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_lists_hold_no_unused_slots_and_long_ones_grow_as_vec_does() {
        let mut list = Vec::new();
        for n in 1..=8 {
            push_small(&mut list, n);
            assert_eq!(list.capacity(), n, "exactly {n}");
        }
        let mut reallocations = 0;
        for n in 9..=1024 {
            let before = list.capacity();
            push_small(&mut list, n);
            reallocations += usize::from(list.capacity() != before);
        }
        assert!(
            reallocations < 10,
            "{reallocations} reallocations for 1,016 entries"
        );
        assert_eq!(list.len(), 1024);
    }

    #[test]
    fn names_are_shared() {
        assert!(Arc::ptr_eq(&intern("okta"), &intern("okta")));
    }
}
