//! The Azure Functions custom-handler protocol: the edge of the application.
//!
//! The host (`func start` locally, the Functions runtime in Azure) starts this process with `FUNCTIONS_CUSTOMHANDLER_PORT`,
//! waits for any HTTP answer to `GET /`, then invokes each function by `POST /<function folder name>` with a JSON envelope
//! and expects `{"Outputs":{…},"Logs":[…],"ReturnValue":…}` back (functions-custom-handlers; host source
//! `Workers/Http/DefaultHttpWorkerService.cs`). Non-2xx fails the invocation, so it is reserved for real failures.
//!
//! Both functions use **envelope mode** (not `enableForwardingHttpRequest`): the webhook has a queue output binding
//! besides `http`, and forwarding mode is only allowed when `http` is the sole output.

pub mod envelope;
mod routes;
pub mod timer;
pub mod webhook;

pub use envelope::{InvocationRequest, InvocationResponse};
pub use routes::{AppState, CERT_SYNC_FUNCTION, WEBHOOK_FUNCTION, router};
