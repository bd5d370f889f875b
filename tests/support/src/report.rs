//! Typed views of the run report for assertions, written from docs/run-report.md and not from the product's types:
//! a test that reads the report through them checks the documented format (a renamed field fails to parse here).
//! Every documented field a test reads is here; fields a view leaves out are ignored.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub schema_version: u32,
    pub run_id: String,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub outcome: Outcome,
    pub totals: Totals,
    pub changes: Vec<Change>,
    pub skipped: Vec<Skip>,
    pub notes: Vec<String>,
    pub graph: Graph,
    pub log_location: Option<String>,
}

impl Report {
    /// Parses a report as the log container or a `--json` run holds it; panics naming what does not match the doc.
    pub fn parse(bytes: &[u8]) -> Report {
        serde_json::from_slice(bytes).unwrap_or_else(|error| {
            panic!("the run report does not match docs/run-report.md ({error}): {}", String::from_utf8_lossy(bytes))
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    pub kind: String,
    pub past_due: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub status: String,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub matched: u64,
    pub only_in_a: u64,
    pub only_in_b: u64,
    pub ambiguous: u64,
    pub skipped: u64,
    pub users_changed: u64,
    pub values_added: u64,
    pub values_removed: u64,
    pub unchanged: u64,
    pub conflicts: u64,
    pub failed: u64,
    pub non_user_members: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    pub id: String,
    pub user_principal_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub user: UserRef,
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skip {
    pub user: UserRef,
    pub side: String,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Graph {
    pub tenant_a: GraphUsage,
    pub tenant_b: GraphUsage,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphUsage {
    pub reads: u64,
    pub writes: u64,
    pub batches: u64,
}
