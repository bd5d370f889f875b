//! `function-cert-sync`: the timer-triggered full sync of every pair, then the upkeep of the Graph subscriptions.

use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::envelope::{InvocationResponse, TimerInfo};
use super::invocation::Invocation;
use crate::sync::{RunOutcome, RunRequest, Trigger};

/// The binding name in `function-cert-sync/function.json`.
pub const TIMER_BINDING: &str = "timer";

/// `POST /function-cert-sync`.
pub async fn handle(
    State(state): State<AppState>,
    Invocation { id, request }: Invocation,
) -> (StatusCode, InvocationResponse) {
    let mut response = InvocationResponse::default();
    let timer = match TimerInfo::from_invocation(&request, TIMER_BINDING) {
        Ok(timer) => timer,
        Err(error) => {
            tracing::error!(%error, "rejected timer invocation");
            response.log(error.to_string());
            return (StatusCode::BAD_REQUEST, response);
        }
    };
    if timer.is_past_due {
        // The host runs a missed schedule once, late (functions-bindings-timer): a full sync is idempotent, so run it.
        tracing::warn!(last = ?timer.last, "timer is past due: running the missed sync now");
        response.log("The timer was past due; running the missed full sync now.");
    }
    // After the sync, the subscriptions are created or renewed when WEBHOOK_NOTIFICATION_URL is set; their
    // problems are notes of the report, never a failed sync.
    let report = state
        .sync
        .run_and_maintain_subscriptions(RunRequest {
            trigger: Trigger::Timer { past_due: timer.is_past_due },
            invocation_id: Some(id),
            // Below functionTimeout: a first sync of any size stops in time, reports, and continues from the queue.
            soft_deadline: Some(state.sync.settings().sync.soft_deadline),
            queues_follow_ups: true,
            ..RunRequest::default()
        })
        .await;
    response.logs.extend(report.summary_lines());
    super::continuation::queue_follow_ups(&mut response, &report, 1);
    response.return_value = report.return_value();
    // Users that failed individually are in the report; only a run that could not do its job fails the invocation,
    // so the host's failure count (and alerts on it) mean something.
    let status = match report.outcome {
        RunOutcome::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    };
    (status, response)
}
