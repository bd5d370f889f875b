//! The axum router the Functions host talks to.

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;
use tracing::Span;

use super::AppState;
use super::invocation::{MAX_ENVELOPE_BYTES, invocation_id};

/// The function names are the folder names next to host.json: the host posts to `/<name>`.
pub const CERT_SYNC_FUNCTION: &str = "function-cert-sync";
pub const WEBHOOK_FUNCTION: &str = "function-webhook";
pub const NOTIFICATIONS_FUNCTION: &str = "function-notifications";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(&format!("/{CERT_SYNC_FUNCTION}"), post(super::timer::handle))
        .route(&format!("/{WEBHOOK_FUNCTION}"), post(super::webhook::handle))
        .route(&format!("/{NOTIFICATIONS_FUNCTION}"), post(super::notifications::handle))
        // One span per invocation, around reading the envelope too (so a rejection is logged inside it). The
        // handlers log what happened; the layer adds no request or response lines of its own.
        .route_layer(
            TraceLayer::new_for_http().make_span_with(invocation_span).on_request(()).on_response(()).on_failure(()),
        )
        // Readiness: the host polls `GET /` until it gets any HTTP answer. After the span layer: not an invocation.
        .route("/", get(|| async { "certsync custom handler is running" }))
        // No server-side timeout: the host enforces `functionTimeout` (host.json) on every invocation.
        .layer(DefaultBodyLimit::max(MAX_ENVELOPE_BYTES))
        .with_state(state)
}

/// `invocation{function=<folder name> invocation_id=<the host's id>}`: what ties a log line to the host's record.
fn invocation_span(request: &Request) -> Span {
    let path = request.extensions().get::<MatchedPath>().map_or(request.uri().path(), MatchedPath::as_str);
    let function = path.trim_start_matches('/');
    let id = invocation_id(request.headers());
    tracing::info_span!("invocation", function, invocation_id = %id)
}
