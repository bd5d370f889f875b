//! Integration tests of the real `certsync` binary, started the way the Azure Functions host starts a custom
//! handler: `FUNCTIONS_CUSTOMHANDLER_PORT` in the environment, readiness by `GET /`, then the exact envelopes of
//! the custom-handler protocol. Behind it: the Graph emulator (in this process) and a real Azurite.

use certsync_test_support::{app as helpers, azurite, functions_host, host};

mod certificates;
mod config;
mod notifications;
mod protocol;
mod sync;
