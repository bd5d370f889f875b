//! certsync: keeps `authorizationInfo.certificateUserIds` of users in a resource tenant (Tenant B) in step with the
//! users (and certificates) of a device tenant (Tenant A), as an Azure Functions custom handler.
//!
//! Layers, from the edge inwards:
//! - [`functions`]: the Azure Functions custom-handler protocol (envelopes in, `{"Outputs","Logs","ReturnValue"}` out);
//! - [`sync`]: the reconcile core — observe, plan (pure), apply (effects), report;
//! - [`graph`] and [`storage`]: Microsoft Graph and Azure Blob Storage behind small interfaces;
//! - [`config`]: every setting, parsed once at start-up.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod functions;
pub mod graph;
pub mod storage;
pub mod sync;
pub mod telemetry;
