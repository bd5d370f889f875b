//! The ownership ledger: which certificateUserIds values this tool wrote to which Tenant B user.
//!
//! Only ledger values are ever removed; every other value is an administrator's and is kept in place. The ledger
//! lives in the state container as one JSON document per Tenant B tenant, updated with ETag conditions
//! (`storage::update_json`). A value is added to the ledger **before** it is written to Graph and removed from it
//! **after** it is removed from Graph, so a run killed at any point leaves the ledger claiming at most values that
//! are not (yet) on the user — which the next plan drops — and never forgets a value it wrote.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{TenantId, UserId};

pub const LEDGER_SCHEMA_VERSION: u32 = 1;

/// The blob name of a tenant's ledger in the state container.
pub fn ledger_blob(tenant: &TenantId) -> String {
    format!("ledger/{tenant}.json")
}

/// The blob used as the run lease for a tenant: one writer per Tenant B at a time.
pub fn lease_blob(tenant: &TenantId) -> String {
    format!("locks/{tenant}.lock")
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub schema_version: u32,
    /// User id → the values this tool owns on that user, in the order it added them.
    pub users: BTreeMap<UserId, Vec<String>>,
}

impl Ledger {
    pub fn new() -> Self {
        Self { schema_version: LEDGER_SCHEMA_VERSION, users: BTreeMap::new() }
    }

    pub fn owned(&self, user: &UserId) -> &[String] {
        self.users.get(user).map(Vec::as_slice).unwrap_or_default()
    }

    /// Sets a user's owned values; an empty list removes the entry so the ledger does not grow with departed users.
    pub fn set(&mut self, user: UserId, values: Vec<String>) {
        if values.is_empty() {
            self.users.remove(&user);
        } else {
            self.users.insert(user, values);
        }
    }

    /// Adds values to a user's owned set (keeping order, no duplicates).
    pub fn claim(&mut self, user: &UserId, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let entry = self.users.entry(user.clone()).or_default();
        for value in values {
            if !entry.contains(value) {
                entry.push(value.clone());
            }
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
