//! Integration tests: each pins one documented Graph or Entra behaviour, named by its doc page in brackets.

mod admin;
mod batch;
mod certificates;
mod cloud_pki;
mod delta;
mod helpers;
mod members;
mod subscriptions;
mod throttling;
mod throughput;
mod tokens;
mod users;
