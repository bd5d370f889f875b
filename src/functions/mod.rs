//! The Azure Functions custom-handler protocol: the edge of the application.
//!
//! The host (`func start` locally, the Functions runtime in Azure) starts this process with `FUNCTIONS_CUSTOMHANDLER_PORT`,
//! waits for any HTTP answer to `GET /`, then invokes each function by `POST /<function folder name>` with a JSON envelope
//! and expects `{"Outputs":{…},"Logs":[…],"ReturnValue":…}` back (functions-custom-handlers; host source
//! `Workers/Http/DefaultHttpWorkerService.cs`). Non-2xx fails the invocation, so it is reserved for real failures.
//!
//! Three functions: `function-cert-sync` (timer: the full sync, then subscription upkeep), `function-webhook` (Graph
//! change notifications → the `graph-notifications` queue), `function-notifications` (queue trigger: the incremental
//! sync of the groups that changed).
//!
//! The HTTP function uses **envelope mode** (not `enableForwardingHttpRequest`): the webhook has a queue output binding
//! besides `http`, and forwarding mode is only allowed when `http` is the sole output.
//!
//! Calls go down: [`routes`] names the handlers, each handler (`timer`, `webhook`, `notifications`) takes an
//! [`Invocation`] (the envelope, read by the extractor, whose rejection is the failed invocation) and names only what
//! this module defines ([`AppState`]) and the types below it, never `routes`. So this module re-exports nothing from
//! `routes` either: the router is `functions::routes::router`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::config::WebhookSettings;
use crate::sync::SyncService;

pub mod continuation;
pub mod envelope;
mod invocation;
pub mod notifications;
pub mod routes;
pub mod timer;
pub mod webhook;

pub use envelope::{InvocationRequest, InvocationResponse};
pub use invocation::{Invocation, InvocationRejection};

/// What every handler can reach: the sync service, the webhook's secrets, the worker's counters.
#[derive(Clone)]
pub struct AppState {
    pub sync: Arc<SyncService>,
    pub webhook: Arc<WebhookSettings>,
    pub counters: Arc<WorkerCounters>,
}

impl AppState {
    pub fn new(sync: Arc<SyncService>) -> Self {
        let webhook = Arc::new(sync.settings().webhook.clone());
        Self { sync, webhook, counters: Arc::default() }
    }
}

/// Queue messages `function-notifications` dropped since the process started, by reason (also logged with each drop).
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub malformed: AtomicU64,
    pub unknown_subscription: AtomicU64,
}
