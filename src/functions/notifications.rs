//! `function-notifications`: the queue-triggered worker behind the webhook.
//!
//! The host dequeues a `graph-notifications` message (what `function-webhook` queued: a [`QueuedNotification`]) and
//! posts `{"Data":{"message": …},"Metadata":{"DequeueCount": …, …}}`. The real host binds a queue trigger without
//! `dataType` as a .NET string and passes every string through `JsonConvert.SerializeObject`
//! (`GetHttpScriptInvocationContextValue` in `src/WebJobs.Script/Workers/MessageExtensions/
//! ScriptInvocationContextExtensions.cs`, asserted by its test `GetHttpScriptInvocationContextValueTest_String`), so
//! the message arrives JSON-encoded twice and each `Metadata` scalar as JSON text (`"DequeueCount":"1"`,
//! `"Id":"\"…\""`). The Learn sample shows the message encoded once, and a host could hand over an object: all three
//! are read (functions.md, "Non-HTTP triggers", corrected). The answer decides the
//! message's fate (functions.md, "Non-HTTP triggers"): 2xx deletes it; non-2xx fails the invocation, the message
//! comes back after the visibility timeout, and after `maxDequeueCount` (host.json: 5) attempts the host moves it to
//! `graph-notifications-poison`. So:
//! - a message that can never succeed (not a notification, or from a subscription that is not ours) is answered 200
//!   with an error or security log line, and counted;
//! - a transient failure (storage or Graph down, the run lease held too long) answers 500 so the host retries; the
//!   last attempt says in the log that the message goes to the poison queue and that the timer's sync is the net.
//!
//! The unknown-subscription check lives here, not in the webhook: it needs a storage read, and the webhook must
//! answer Graph without I/O.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::continuation::{Continuation, ContinuationMessage, FoldedMessage};
use super::envelope::{InvocationRequest, InvocationResponse, kind_of};
use super::invocation::Invocation;
use super::webhook::QueuedNotification;
use crate::domain::{GroupId, Side};
use crate::sync::subscriptions::LifecycleOutcome;
use crate::sync::{ChangedGroup, RunOutcome, RunRequest, Trigger};

/// The binding name in `function-notifications/function.json`.
pub const MESSAGE_BINDING: &str = "message";
/// `extensions.queues.maxDequeueCount` in host.json.
pub const MAX_DEQUEUE_COUNT: u64 = 5;
pub const POISON_QUEUE: &str = "graph-notifications-poison";

/// How many JSON strings may wrap the message object in `Data.message`: the real host's encoding of the message text
/// adds one and the text itself is another; a third allows a queue written by a tool that JSON-encodes its text
/// before queueing it, as the host's own output conversion would for a string. Anything deeper is not a message.
const MAX_STRING_LAYERS: usize = 3;

/// What a `graph-notifications` message can be.
#[derive(Debug)]
enum Queued {
    Notification(QueuedNotification),
    Continuation(Continuation),
    Folded(BTreeSet<ChangedGroup>),
}

/// What the message is, or why it is not one.
fn parse_message(request: &InvocationRequest) -> Result<Queued, String> {
    let payload = request.trigger(MESSAGE_BINDING).ok_or("the invocation has no Data.message")?;
    let not_a_notification = |e: serde_json::Error| format!("not a queued notification: {e}");
    let mut text = match payload {
        // A host that hands over the object: read it as the text it was queued as.
        Value::Object(_) => payload.to_string(),
        Value::String(text) => text.clone(),
        other => return Err(format!("Data.message is {}, not a queued notification", kind_of(other))),
    };
    // Each JSON string is decoded into the text it holds; the first text that is not a JSON string is the message.
    for _ in 0..MAX_STRING_LAYERS {
        if !text.trim_start().starts_with('"') {
            return read_queued(&text);
        }
        text = serde_json::from_str::<String>(&text).map_err(not_a_notification)?;
    }
    Err(format!("Data.message is wrapped in more than {MAX_STRING_LAYERS} JSON strings, not a queued notification"))
}

/// The members that tell the kinds of message apart: a continuation has `continuation`, a folded record
/// `changedGroups`, and a notification neither.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kind {
    continuation: Option<serde::de::IgnoredAny>,
    changed_groups: Option<serde::de::IgnoredAny>,
}

/// One message's text, read straight into its struct (an ignored member need not fit a `Value`, e.g. `1e999`).
fn read_queued(text: &str) -> Result<Queued, String> {
    let kind = serde_json::from_str::<Kind>(text).map_err(|e| format!("not a queued notification: {e}"))?;
    if kind.continuation.is_some() {
        serde_json::from_str::<ContinuationMessage>(text)
            .map(|m| Queued::Continuation(m.continuation))
            .map_err(|e| format!("not a continuation: {e}"))
    } else if kind.changed_groups.is_some() {
        serde_json::from_str::<FoldedMessage>(text)
            .map(|m| Queued::Folded(m.changed_groups.into_iter().collect()))
            .map_err(|e| format!("not a list of changed groups: {e}"))
    } else {
        serde_json::from_str(text).map(Queued::Notification).map_err(|e| format!("not a queued notification: {e}"))
    }
}

/// `Metadata.DequeueCount`: a number, its text (the real host's `"1"`), or that text JSON-encoded; 1 when absent.
fn dequeue_count(request: &InvocationRequest) -> u64 {
    request.metadata_text("DequeueCount").and_then(|text| text.trim().parse().ok()).unwrap_or(1)
}

/// `POST /function-notifications`.
pub async fn handle(
    State(state): State<AppState>,
    Invocation { id, request }: Invocation,
) -> (StatusCode, InvocationResponse) {
    let mut response = InvocationResponse::default();
    let attempt = dequeue_count(&request);
    let message = match parse_message(&request) {
        Ok(Queued::Notification(message)) => message,
        Ok(Queued::Continuation(continuation)) => return run_continuation(&state, id, attempt, continuation).await,
        Ok(Queued::Folded(groups)) => {
            return run_groups(&state, id, attempt, groups, &mut InvocationResponse::default()).await;
        }
        Err(reason) => {
            let total = state.counters.malformed.fetch_add(1, Ordering::Relaxed) + 1;
            let queue_message_id = request.metadata_text("Id").unwrap_or_else(|| "unknown".to_owned());
            tracing::error!(
                %reason,
                %queue_message_id,
                malformed_total = total,
                "dropped a malformed queue message: it can never succeed"
            );
            response.log(format!(
                "Dropped a malformed message (queue message id {queue_message_id}; it can never succeed, so it is not \
                 retried): {reason}"
            ));
            return (StatusCode::OK, response);
        }
    };

    let (side, entry) = match state.sync.find_subscription(&message.subscription_id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            let total = state.counters.unknown_subscription.fetch_add(1, Ordering::Relaxed) + 1;
            // Security: the clientState matched, but the subscription is not one we hold (deleted, or forged).
            tracing::warn!(
                subscription_id = %message.subscription_id,
                tenant_id = message.tenant_id.as_deref().unwrap_or("none"),
                unknown_total = total,
                "dropped a notification for an unknown subscription (security)"
            );
            response.log(format!(
                "Dropped a notification for subscription {}, which is not one of ours (security).",
                message.subscription_id
            ));
            return (StatusCode::OK, response);
        }
        Err(error) => {
            return retry(response, attempt, format!("the subscription records cannot be read: {error}"));
        }
    };
    if let Some(group) = &message.group_id
        && !group.eq_ignore_ascii_case(entry.group.as_str())
    {
        tracing::warn!(%group, recorded = %entry.group, "the notification names another group than its subscription; using the subscription's");
    }

    if let Some(event) = &message.lifecycle_event {
        match state.sync.handle_lifecycle_event(side, &entry, event).await {
            Ok(LifecycleOutcome::Ignored) => {
                // `missed` (not sent for groups, but harmless): catch up through delta query below.
                tracing::info!(%event, subscription_id = %entry.id, "lifecycle event: reconciling the group");
            }
            Ok(outcome) => {
                tracing::info!(%event, subscription_id = %entry.id, ?outcome, "lifecycle event handled");
                response.log(format!("Lifecycle event {event} for subscription {}: {outcome:?}.", entry.id));
                return (StatusCode::OK, response);
            }
            Err(reason) => return retry(response, attempt, format!("lifecycle event {event}: {reason}")),
        }
    }

    if !configured(&state, side, &entry.group) {
        response.log(format!("Group {} is no longer configured; the notification was ignored.", entry.group));
        return (StatusCode::OK, response);
    }
    let groups = BTreeSet::from([ChangedGroup { side, group: entry.group.clone() }]);
    run_groups(&state, id, attempt, groups, &mut response).await
}

/// An incremental run of `groups` (one notification's group, or those handed on by a long run), with its logs.
async fn run_groups(
    state: &AppState,
    id: String,
    attempt: u64,
    groups: BTreeSet<ChangedGroup>,
    response: &mut InvocationResponse,
) -> (StatusCode, InvocationResponse) {
    let mut response = std::mem::take(response);
    let groups: BTreeSet<ChangedGroup> = groups.into_iter().filter(|g| configured(state, g.side, &g.group)).collect();
    if groups.is_empty() {
        response.log("None of the groups is configured any more; nothing to do.");
        return (StatusCode::OK, response);
    }
    let report = state
        .sync
        .run_incremental(
            groups,
            RunRequest {
                trigger: Trigger::Notification,
                invocation_id: Some(id),
                queues_follow_ups: true,
                ..RunRequest::default()
            },
        )
        .await;
    response.logs.extend(report.summary_lines());
    response.return_value = report.return_value();
    response.return_value["scope"] = json!(report.scope);
    super::continuation::queue_follow_ups(&mut response, &report, 1);
    match &report.outcome {
        RunOutcome::Failed { reason } => retry(response, attempt, reason.clone()),
        _ => (StatusCode::OK, response),
    }
}

/// A continuation of a full sync: the same full sync, with the same soft deadline, continued again when needed.
async fn run_continuation(
    state: &AppState,
    id: String,
    attempt: u64,
    continuation: Continuation,
) -> (StatusCode, InvocationResponse) {
    let mut response = InvocationResponse::default();
    tracing::info!(
        sequence = continuation.sequence,
        after_run = %continuation.after_run,
        remaining = continuation.remaining,
        "continuing a full sync"
    );
    let report = state
        .sync
        .run(RunRequest {
            trigger: Trigger::Continuation { sequence: continuation.sequence },
            invocation_id: Some(id),
            soft_deadline: Some(state.sync.settings().sync.soft_deadline),
            wait_for_lease: true,
            queues_follow_ups: true,
            ..RunRequest::default()
        })
        .await;
    response.logs.extend(report.summary_lines());
    response.return_value = report.return_value();
    super::continuation::queue_follow_ups(&mut response, &report, continuation.sequence.saturating_add(1));
    match &report.outcome {
        RunOutcome::Failed { reason } => retry(response, attempt, reason.clone()),
        _ => (StatusCode::OK, response),
    }
}

fn configured(state: &AppState, side: Side, group: &GroupId) -> bool {
    state.sync.settings().sync.pairs.iter().any(|p| p.groups(side).contains(group))
}

/// A transient failure: non-2xx so the host retries; the last attempt says where the message goes.
fn retry(mut response: InvocationResponse, attempt: u64, reason: String) -> (StatusCode, InvocationResponse) {
    if attempt >= MAX_DEQUEUE_COUNT {
        tracing::error!(
            attempt,
            %reason,
            "final attempt failed: the host moves this message to {POISON_QUEUE}; the timer's full sync will reconcile the group"
        );
        response.log(format!(
            "Attempt {attempt} of {MAX_DEQUEUE_COUNT} failed ({reason}); the message now goes to {POISON_QUEUE}. The \
             scheduled full sync reconciles the group; the next notification for it also catches up (delta query)."
        ));
    } else {
        tracing::warn!(attempt, %reason, "notification processing failed; the queue retries it");
        response.log(format!("Attempt {attempt} of {MAX_DEQUEUE_COUNT} failed, the queue retries: {reason}"));
    }
    (StatusCode::INTERNAL_SERVER_ERROR, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(data: Value, metadata: Value) -> InvocationRequest {
        serde_json::from_value(json!({"Data": data, "Metadata": metadata})).unwrap()
    }

    /// `Data` with `message` as the real host sends it (the text through `JsonConvert.SerializeObject` once more),
    /// as the text once, and as an object.
    fn every_encoding(message: Value) -> [(&'static str, Value); 3] {
        let text = message.to_string();
        let real_host = Value::String(Value::String(text.clone()).to_string());
        [
            ("real host", json!({"message": real_host})),
            ("encoded once", json!({"message": text})),
            ("object", json!({"message": message})),
        ]
    }

    #[test]
    fn a_message_parses_as_the_real_host_sends_it_encoded_once_or_as_an_object() {
        let message = json!({"subscriptionId": "s1", "tenantId": "t", "changeType": "updated", "groupId": "g", "resource": "Groups/g"});
        for (form, data) in every_encoding(message) {
            let parsed = parse_message(&request(data, json!({}))).unwrap_or_else(|e| panic!("{form}: {e}"));
            assert!(matches!(parsed, Queued::Notification(n) if n.subscription_id == "s1"), "{form}");
        }
    }

    // A continuation is queued by our own function's output binding, so it arrives the same three ways.
    #[test]
    fn a_continuation_parses_in_every_encoding_and_is_not_taken_for_a_notification() {
        let message = json!({"continuation": {"sequence": 2, "afterRun": "r1", "remaining": 7}});
        for (form, data) in every_encoding(message) {
            let parsed = parse_message(&request(data, json!({}))).unwrap_or_else(|e| panic!("{form}: {e}"));
            assert!(matches!(parsed, Queued::Continuation(c) if c.sequence == 2 && c.remaining == 7), "{form}");
        }
        let broken = json!({"message": {"continuation": {"sequence": "two"}}});
        let error = parse_message(&request(broken, json!({}))).unwrap_err();
        assert!(error.starts_with("not a continuation"), "{error}");
    }

    #[test]
    fn a_message_that_is_not_a_notification_in_any_encoding_is_malformed() {
        let four_layers = (0..4).fold(json!({"subscriptionId": "s1"}), |v, _| Value::String(v.to_string()));
        for (bad, reason) in [
            (json!({"message": "not json"}), "not a queued notification"),
            (json!({"message": "\"not json\""}), "not a queued notification"),
            (json!({"message": "\"42\""}), "invalid type: integer `42`"),
            (json!({"message": 42}), "Data.message is a number"),
            (json!({"message": {"x": 1}}), "missing field `subscriptionId`"),
            (json!({"message": four_layers}), "wrapped in more than 3 JSON strings"),
            (json!({}), "no Data.message"),
        ] {
            let error = parse_message(&request(bad.clone(), json!({}))).expect_err(&bad.to_string());
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }

    #[test]
    fn the_dequeue_count_is_read_as_a_number_its_text_or_that_text_encoded() {
        assert_eq!(dequeue_count(&request(json!({}), json!({"DequeueCount": 3}))), 3);
        assert_eq!(dequeue_count(&request(json!({}), json!({"DequeueCount": "5"}))), 5);
        assert_eq!(dequeue_count(&request(json!({}), json!({"DequeueCount": "\"4\""}))), 4);
        assert_eq!(dequeue_count(&request(json!({}), json!({"dequeuecount": "2"}))), 2);
        assert_eq!(dequeue_count(&request(json!({}), json!({}))), 1);
    }

    #[test]
    fn the_last_attempt_says_the_message_goes_to_the_poison_queue() {
        let (status, response) = retry(InvocationResponse::default(), 5, "Graph is down".into());
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.logs[0].contains("graph-notifications-poison"), "{:?}", response.logs);
        let (_, response) = retry(InvocationResponse::default(), 2, "Graph is down".into());
        assert!(response.logs[0].contains("retries"), "{:?}", response.logs);
    }
}
