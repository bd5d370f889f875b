//! The axum router the Functions host talks to.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tracing::Instrument;

use super::AppState;
use super::envelope::{EnvelopeError, InvocationRequest, InvocationResponse};

/// The function names are the folder names next to host.json: the host posts to `/<name>`.
pub const CERT_SYNC_FUNCTION: &str = "function-cert-sync";
pub const WEBHOOK_FUNCTION: &str = "function-webhook";
pub const NOTIFICATIONS_FUNCTION: &str = "function-notifications";

/// The host's header carrying the invocation id (host source `HttpWorkerConstants`).
const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";

/// Envelopes carry the webhook body as a string inside JSON; the webhook itself caps the body it accepts
/// (`webhook::MAX_NOTIFICATION_BODY_BYTES`), this only bounds what the server buffers.
const MAX_ENVELOPE_BYTES: usize = 8 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        // Readiness: the host polls `GET /` until it gets any HTTP answer.
        .route("/", get(|| async { "certsync custom handler is running" }))
        .route(&format!("/{CERT_SYNC_FUNCTION}"), post(cert_sync))
        .route(&format!("/{WEBHOOK_FUNCTION}"), post(webhook))
        .route(&format!("/{NOTIFICATIONS_FUNCTION}"), post(notifications))
        // No server-side timeout: the host enforces `functionTimeout` (host.json) on every invocation.
        .layer(DefaultBodyLimit::max(MAX_ENVELOPE_BYTES))
        .with_state(state)
}

fn invocation_id(headers: &HeaderMap) -> String {
    headers.get(INVOCATION_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned()
}

/// The invocation's envelope, or why there is none and the status to fail the invocation with: the body is over
/// [`MAX_ENVELOPE_BYTES`], cannot be read, or is not an envelope.
fn read_envelope(body: Result<Bytes, BytesRejection>) -> Result<InvocationRequest, (StatusCode, EnvelopeError)> {
    let parsed = match body {
        Ok(body) => {
            serde_json::from_slice(&body).map_err(|e| (StatusCode::BAD_REQUEST, EnvelopeError::NotJson(e.to_string())))
        }
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            EnvelopeError::TooLarge { limit_mib: MAX_ENVELOPE_BYTES / (1024 * 1024) },
        )),
        Err(rejection) => Err((rejection.status(), EnvelopeError::Unreadable(rejection.body_text()))),
    };
    if let Err((_, error)) = &parsed {
        tracing::error!(%error, "rejected invocation");
    }
    parsed
}

/// A failed invocation: non-2xx, still the JSON envelope so the reason reaches the host's log.
pub(super) fn failed(status: StatusCode, reason: String) -> Response {
    let mut response = InvocationResponse::default();
    response.log(reason);
    (status, Json(response)).into_response()
}

async fn cert_sync(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let id = invocation_id(&headers);
    let span = tracing::info_span!("invocation", function = CERT_SYNC_FUNCTION, invocation_id = %id);
    async move {
        let request = match read_envelope(body) {
            Ok(request) => request,
            Err((status, error)) => return failed(status, error.to_string()),
        };
        let (status, response) = super::timer::handle(&state, &request, &id).await;
        (status, Json(response)).into_response()
    }
    .instrument(span)
    .await
}

async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let id = invocation_id(&headers);
    let span = tracing::info_span!("invocation", function = WEBHOOK_FUNCTION, invocation_id = %id);
    async move {
        let request = match read_envelope(body) {
            Ok(request) => request,
            Err((status, error)) => return failed(status, error.to_string()),
        };
        let (status, response) = super::webhook::handle(&state.webhook, &request);
        (status, Json(response)).into_response()
    }
    .instrument(span)
    .await
}

async fn notifications(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let id = invocation_id(&headers);
    let span = tracing::info_span!("invocation", function = NOTIFICATIONS_FUNCTION, invocation_id = %id);
    async move {
        let request = match read_envelope(body) {
            Ok(request) => request,
            Err((status, error)) => return failed(status, error.to_string()),
        };
        let (status, response) = super::notifications::handle(&state, &request, &id).await;
        (status, Json(response)).into_response()
    }
    .instrument(span)
    .await
}
