//! Continuations: a full sync that reaches its soft deadline (`SYNC_SOFT_DEADLINE_MINUTES`) before every user is
//! written hands the rest on through the `followUps` queue output of its function (`function-cert-sync`,
//! `function-notifications`; both write to `graph-notifications`, which `function-notifications` reads). The
//! message says only which continuation it is: the next run observes and plans afresh, so it writes exactly what one
//! uninterrupted run would have, and whatever changed in between too.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::{InvocationResponse, queue_message};
use crate::sync::{ChangedGroup, RunOutcome, RunReport};

/// The queue output binding of `function-cert-sync` and `function-notifications`.
pub const FOLLOW_UPS_BINDING: &str = "followUps";

/// `{"continuation":{"sequence":2,"afterRun":"…","remaining":1234}}` on `graph-notifications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContinuationMessage {
    pub continuation: Continuation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Continuation {
    /// 1 for the first continuation of a timer run, then one more each time.
    pub sequence: u32,
    /// The run that reached its deadline (its report says what it wrote).
    pub after_run: String,
    /// Users that run left (the continuation plans again; the number is for the log). 0 for a full sync that met
    /// a run's lease and was handed to it.
    pub remaining: usize,
}

/// `{"changedGroups":[{"side":"tenantA","group":"…"}]}` on `graph-notifications`: the groups of notifications that
/// met a long run's lease, handed on when it ended (`RunReport::follow_ups`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoldedMessage {
    pub changed_groups: Vec<ChangedGroup>,
}

/// Queues what `report` leaves to others on `response`: the continuation numbered `sequence` when the run reached
/// its soft deadline, and the groups folded into it. Says so in the invocation's logs.
pub fn queue_follow_ups(response: &mut InvocationResponse, report: &RunReport, sequence: u32) {
    let mut messages = Vec::new();
    let continuation = |remaining| ContinuationMessage {
        continuation: Continuation { sequence, after_run: report.run_id.clone(), remaining },
    };
    if let RunOutcome::Continued { remaining } = report.outcome {
        messages.push(queue_message(&continuation(remaining)));
        tracing::info!(sequence, remaining, after_run = %report.run_id, "queued a continuation of the full sync");
        response.log(format!("Queued continuation {sequence} for the {remaining} users left."));
    }
    // Never beside a continuation: a run that continued hands its folded work on to it (`Trail::full_sync_follows`).
    if report.full_sync_follows {
        messages.push(queue_message(&continuation(0)));
        tracing::info!(after_run = %report.run_id, "queued the full sync that was due while this run held the lease");
        response.log("Queued the full sync that was due while this run held the lease.");
    }
    if !report.follow_ups.is_empty() {
        messages.push(queue_message(&FoldedMessage { changed_groups: report.follow_ups.clone() }));
        tracing::info!(groups = report.follow_ups.len(), "queued the notifications folded into this run");
        response
            .log(format!("Queued the {} group(s) whose notifications came during this run.", report.follow_ups.len()));
    }
    if !messages.is_empty() {
        response.outputs.insert(FOLLOW_UPS_BINDING.to_owned(), Value::Array(messages));
    }
}
