//! The Graph client against a real in-process Graph emulator, authenticated with the production credentials.
//! One binary with modules links once (dropshot `tests/integration-tests/main.rs`).

mod client_certificate;
mod credentials;
mod helpers;
mod members;
mod throttling;
mod users;
mod writes;
