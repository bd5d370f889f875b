//! Integration tests of the real `certsync` binary, started the way the Azure Functions host starts a custom
//! handler: `FUNCTIONS_CUSTOMHANDLER_PORT` in the environment, readiness by `GET /`, then the exact envelopes of
//! the custom-handler protocol. Behind it: the Graph emulator (in this process) and a real Azurite.

#[path = "../support/azurite.rs"]
mod azurite;
#[allow(dead_code)] // The shared host rules; each suite uses some of them.
#[path = "../support/functions_host.rs"]
mod functions_host;
mod helpers;
mod host;

mod certificates;
mod config;
mod notifications;
mod protocol;
mod sync;
