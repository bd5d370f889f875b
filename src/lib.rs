//! certsync: keeps `authorizationInfo.certificateUserIds` of users in a resource tenant (Tenant B) in step with the
//! users (and certificates) of a device tenant (Tenant A), as an Azure Functions custom handler.
//!
//! Layers, from the edge inwards:
//! - [`functions`]: the Azure Functions custom-handler protocol (envelopes in, `{"Outputs","Logs","ReturnValue"}` out);
//! - [`sync`]: the reconcile core — observe, plan (pure), apply (effects), report;
//! - [`graph`] and [`storage`]: Microsoft Graph and Azure Blob Storage behind small interfaces;
//! - [`config`]: every setting, parsed once at start-up.
//!
//! Feature `demo` (default) adds `demo`, the `certsync demo` story against the in-process Graph emulator; the deployed
//! package is built without it.

pub mod app;
pub mod certificates;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod domain;
pub mod functions;
pub mod graph;
pub mod memory;
pub mod storage;
pub mod sync;
pub mod telemetry;

/// `outer: inner: innermost`: an error and its sources on one line, skipping a level whose text its parent already
/// contains. The one way this project turns an error chain into a message.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
