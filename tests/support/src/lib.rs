//! What the integration tests (`tests/*`) and the benchmark share, in one place (issue 17): the `certsync` binary
//! started as the Functions host starts it ([`app`]), the host's own conversion rules ([`functions_host`], citing
//! `Azure/azure-functions-host`), a host shim that applies them ([`host`]), a real Azurite per test ([`azurite`]), and typed views of the run report ([`report`]).
//!
//! A dev-only crate of the workspace, so each test crate uses what it needs without `#[path]` includes and without
//! `dead_code` allowances.

pub mod app;
pub mod azurite;
pub mod functions_host;
pub mod host;
pub mod report;
