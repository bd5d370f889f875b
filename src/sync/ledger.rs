//! The ownership ledger: which certificateUserIds values this tool wrote to which Tenant B user.
//!
//! Only ledger values are ever removed; every other value is an administrator's and is kept in place. The ledger
//! lives in the state container as one JSON document per Tenant B tenant, updated with ETag conditions
//! (`storage::update_json`). A value is added to the ledger **before** it is written to Graph and removed from it
//! **after** it is removed from Graph, so a run killed at any point leaves the ledger claiming at most values that
//! are not (yet) on the user — which the next plan drops — and never forgets a value it wrote.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::{TenantId, UserId};

pub const LEDGER_SCHEMA_VERSION: u32 = 1;

/// The blob name of a tenant's ledger in the state container.
pub fn ledger_blob(tenant: &TenantId) -> String {
    format!("ledger/{tenant}.json")
}

/// The blob that says a tenant's ledger exists (`ledger/<tenant>.anchor.json`): written once a ledger is, and never
/// removed by the tool. A missing ledger beside its anchor was lost, not never made (see [`LedgerAnchor`]).
pub fn anchor_blob(tenant: &TenantId) -> String {
    format!("ledger/{tenant}.anchor.json")
}

/// Evidence that a ledger was written for this tenant. Without it a deleted ledger looks like a first run: the next
/// run would start a fresh ledger holding only its own new users, and every value written before would be taken for
/// an administrator's and never removed, even after its user left (issue 18). With it, such a run fails instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerAnchor {
    pub schema_version: u32,
    /// When the anchor was written (RFC 3339): the ledger existed then.
    pub anchored: String,
}

/// The blob used as the run lease for a tenant: one writer per Tenant B at a time.
/// Where the work handed to the run holding the lease is kept, next to the lease (`reconciler::Folded`).
pub fn folded_blob(tenant: &TenantId) -> String {
    format!("locks/{tenant}.folded.json")
}

pub fn lease_blob(tenant: &TenantId) -> String {
    format!("locks/{tenant}.lock")
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub schema_version: u32,
    /// User id → the values this tool owns on that user, in the order it added them.
    ///
    /// Shared between clones until one of them changes (copy on write): a run holds the ledger it read, the copy it
    /// restricts an incremental plan with and the planned ledger, and in a run where nothing changed all three are
    /// the same 100,000 entries (about 20 MB each at that size).
    #[serde(serialize_with = "write_users", deserialize_with = "read_users")]
    pub users: Arc<BTreeMap<UserId, Vec<String>>>,
}

fn write_users<S: serde::Serializer>(
    users: &Arc<BTreeMap<UserId, Vec<String>>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    users.as_ref().serialize(serializer)
}

/// The `users` map, built in one pass with full nodes and no spare room in its lists. Read entry by entry, a
/// B-tree fed keys in order leaves its nodes half empty, and a list read from JSON grows to four slots for one value:
/// at 100,000 users that was 4 MB and 7 MB of nothing.
fn read_users<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Arc<BTreeMap<UserId, Vec<String>>>, D::Error> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Vec<(UserId, Vec<String>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of user ids to lists of values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some((id, mut values)) = map.next_entry::<UserId, Vec<String>>()? {
                values.shrink_to_fit();
                entries.push((id, values));
            }
            Ok(entries)
        }
    }
    // Collecting sorts once and builds full nodes; of two entries for one id the last wins, as inserting would.
    let users: BTreeMap<UserId, Vec<String>> = deserializer.deserialize_map(Entries)?.into_iter().collect();
    Ok(Arc::new(users))
}

impl Ledger {
    pub fn new() -> Self {
        Self { schema_version: LEDGER_SCHEMA_VERSION, users: Arc::default() }
    }

    pub fn owned(&self, user: &UserId) -> &[String] {
        self.users.get(user).map(Vec::as_slice).unwrap_or_default()
    }

    /// Sets a user's owned values; an empty list removes the entry so the ledger does not grow with departed users.
    /// Setting what is already there changes nothing (and copies nothing shared).
    pub fn set(&mut self, user: UserId, mut values: Vec<String>) {
        if values.is_empty() {
            if self.users.contains_key(&user) {
                Arc::make_mut(&mut self.users).remove(&user);
            }
        } else if self.users.get(&user) != Some(&values) {
            values.shrink_to_fit();
            Arc::make_mut(&mut self.users).insert(user, values);
        }
    }

    /// Adds values to a user's owned set (keeping order, no duplicates).
    pub fn claim(&mut self, user: &UserId, values: &[String]) {
        let owned = self.owned(user);
        if values.is_empty() || (!owned.is_empty() && values.iter().all(|value| owned.contains(value))) {
            return;
        }
        let entry = Arc::make_mut(&mut self.users).entry(user.clone()).or_default();
        for value in values {
            if !entry.contains(value) {
                entry.push(value.clone());
            }
        }
    }
}

/// Ledger entries that differ from the ledger a plan was made from, for users the plan does not change: the entry of
/// a deleted user dropped, a claim on a value no longer on its user pruned. (A changed user's entry follows from its
/// change; apply settles it from what was really written.) A plan carries these instead of a second, edited copy of
/// the whole ledger: at 100,000 users that copy was 14 MB of a 1 % churn run's peak memory (BENCHMARKS.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerEdits {
    /// Sorted by user id, one entry per user; an empty list drops the user's entry.
    entries: Vec<(UserId, Vec<String>)>,
}

impl LedgerEdits {
    /// The edits among `entries` that change something in `base` (of two for one user, the last wins).
    pub fn new(base: &Ledger, entries: impl IntoIterator<Item = (UserId, Vec<String>)>) -> Self {
        let mut entries: Vec<(UserId, Vec<String>)> = entries.into_iter().collect();
        entries.reverse();
        entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        entries.retain(|(user, values)| base.owned(user) != values.as_slice());
        entries.shrink_to_fit();
        Self { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&UserId, &[String])> {
        self.entries.iter().map(|(user, values)| (user, values.as_slice()))
    }

    /// Only the edits of the users `keep` accepts.
    pub fn retained(&self, mut keep: impl FnMut(&UserId) -> bool) -> Self {
        Self { entries: self.entries.iter().filter(|(user, _)| keep(user)).cloned().collect() }
    }

    /// Writes the edits into `ledger`.
    pub fn apply_to(&self, ledger: &mut Ledger) {
        for (user, values) in &self.entries {
            ledger.set(user.clone(), values.clone());
        }
    }
}

/// What reading the ledger found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerState {
    Loaded(Ledger),
    /// No ledger yet (first run, or it was deleted): nothing can be removed, because nothing is known to be ours.
    Missing,
    /// The ledger exists but cannot be read or parsed: the run writes nothing and says why; the blob is never replaced.
    Unreadable(String),
}

impl LedgerState {
    pub fn ledger(&self) -> Option<&Ledger> {
        match self {
            Self::Loaded(ledger) => Some(ledger),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> UserId {
        UserId::parse(&format!("00000000-0000-4000-8000-0000000000{n:02x}")).unwrap()
    }

    #[test]
    fn clones_share_their_entries_until_one_of_them_changes() {
        let mut ledger = Ledger::new();
        ledger.set(id(1), vec!["X509:<PN>a".into()]);
        let mut copy = ledger.clone();
        copy.set(id(1), vec!["X509:<PN>a".into()]);
        copy.claim(&id(1), &["X509:<PN>a".into()]);
        copy.set(id(2), Vec::new());
        assert!(Arc::ptr_eq(&ledger.users, &copy.users), "nothing changed, nothing copied");
        copy.claim(&id(1), &["X509:<PN>b".into()]);
        assert!(!Arc::ptr_eq(&ledger.users, &copy.users));
        assert_eq!(ledger.owned(&id(1)), ["X509:<PN>a"]);
        assert_eq!(copy.owned(&id(1)), ["X509:<PN>a", "X509:<PN>b"]);
        copy.set(id(1), Vec::new());
        assert!(copy.users.is_empty() && ledger.users.len() == 1);
    }

    #[test]
    fn edits_keep_only_what_changes_the_ledger_they_were_made_from() {
        let mut base = Ledger::new();
        base.set(id(1), vec!["a".into()]);
        base.set(id(2), vec!["b".into()]);
        let edits = LedgerEdits::new(
            &base,
            [(id(3), vec!["c".into()]), (id(1), vec!["a".into()]), (id(2), vec![]), (id(3), vec!["d".into()])],
        );
        let ids: Vec<&UserId> = edits.iter().map(|(user, _)| user).collect();
        assert_eq!(ids, [&id(2), &id(3)], "sorted, and user 1's entry is already so");
        let mut ledger = base.clone();
        edits.apply_to(&mut ledger);
        assert_eq!(
            (ledger.owned(&id(1)), ledger.owned(&id(2)), ledger.owned(&id(3))),
            (&["a".to_owned()][..], &[][..], &["d".to_owned()][..])
        );
        assert!(edits.retained(|user| *user == id(1)).is_empty());
    }

    #[test]
    fn the_document_keeps_its_shape() {
        let mut ledger = Ledger::new();
        ledger.claim(&id(1), &["v".into()]);
        let text = serde_json::to_string(&ledger).unwrap();
        assert_eq!(text, r#"{"schemaVersion":1,"users":{"00000000-0000-4000-8000-000000000001":["v"]}}"#);
        assert_eq!(serde_json::from_str::<Ledger>(&text).unwrap(), ledger);
    }
}
