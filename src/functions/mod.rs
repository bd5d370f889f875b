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

pub mod envelope;
pub mod notifications;
mod routes;
pub mod timer;
pub mod webhook;

pub use envelope::{InvocationRequest, InvocationResponse};
pub use routes::{AppState, CERT_SYNC_FUNCTION, NOTIFICATIONS_FUNCTION, WEBHOOK_FUNCTION, router};
