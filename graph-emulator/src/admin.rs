//! The admin API under `/_emulator/` (JSON): the back door over HTTP, for the binary and other processes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use crate::directory::{DirectoryError, lock};
use crate::faults::FaultState;
use crate::options::Faults;
use crate::scenario::Scenario;
use crate::state::AppState;

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/_emulator/scenario", post(load_scenario))
        .route("/_emulator/tenants/{tenant}/groups/{group}/members/{member}", post(add_member).delete(remove_member))
        .route("/_emulator/tenants/{tenant}/users/{user}", get(get_user))
        .route("/_emulator/tenants/{tenant}/subscriptions", get(subscriptions))
        .route("/_emulator/tenants/{tenant}/expire-delta-tokens", post(expire_delta_tokens))
        .route("/_emulator/requests", get(requests).delete(clear_requests))
        .route("/_emulator/faults", put(set_faults).get(get_faults))
        .route("/_emulator/clock/advance", post(advance_clock))
}

struct AdminError(DirectoryError);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            DirectoryError::UnknownReference(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::NOT_FOUND,
        };
        (status, Json(serde_json::json!({ "error": self.0.to_string() }))).into_response()
    }
}

impl From<DirectoryError> for AdminError {
    fn from(e: DirectoryError) -> Self {
        Self(e)
    }
}

async fn load_scenario(
    State(state): State<Arc<AppState>>,
    Json(scenario): Json<Scenario>,
) -> Result<Response, AdminError> {
    let loaded = state.directory.load(&scenario)?;
    Ok(Json(loaded).into_response())
}

async fn add_member(
    State(state): State<Arc<AppState>>,
    Path((tenant, group, member)): Path<(String, String, String)>,
) -> Result<StatusCode, AdminError> {
    state.directory.try_add_member(&tenant, &group, &member)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    State(state): State<Arc<AppState>>,
    Path((tenant, group, member)): Path<(String, String, String)>,
) -> Result<StatusCode, AdminError> {
    state.directory.try_remove_member(&tenant, &group, &member)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_user(
    State(state): State<Arc<AppState>>,
    Path((tenant, user)): Path<(String, String)>,
) -> Result<Response, AdminError> {
    state.directory.try_tenant(&tenant)?;
    let record = state.directory.user(&tenant, &user).ok_or(DirectoryError::UserNotFound(user))?;
    Ok(Json(record).into_response())
}

async fn subscriptions(State(state): State<Arc<AppState>>, Path(tenant): Path<String>) -> Response {
    Json(state.directory.subscriptions(&tenant)).into_response()
}

async fn expire_delta_tokens(State(state): State<Arc<AppState>>, Path(tenant): Path<String>) -> StatusCode {
    state.directory.expire_delta_tokens(&tenant);
    StatusCode::NO_CONTENT
}

async fn requests(State(state): State<Arc<AppState>>) -> Response {
    Json(state.directory.requests()).into_response()
}

async fn clear_requests(State(state): State<Arc<AppState>>) -> StatusCode {
    state.directory.clear_requests();
    StatusCode::NO_CONTENT
}

async fn set_faults(State(state): State<Arc<AppState>>, Json(faults): Json<Faults>) -> StatusCode {
    *lock(&state.faults) = FaultState::new(faults);
    StatusCode::NO_CONTENT
}

/// The fault settings in force and how many faults they injected so far (a hung request counts when it starts).
async fn get_faults(State(state): State<Arc<AppState>>) -> Response {
    let faults = lock(&state.faults);
    Json(serde_json::json!({ "faults": faults.faults(), "injected": faults.injected() })).into_response()
}

#[derive(Deserialize)]
struct Advance {
    seconds: u64,
}

async fn advance_clock(State(state): State<Arc<AppState>>, Json(advance): Json<Advance>) -> StatusCode {
    state.directory.advance_clock(Duration::from_secs(advance.seconds));
    StatusCode::NO_CONTENT
}
