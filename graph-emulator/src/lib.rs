//! An in-memory Microsoft Graph + Entra ID emulator, faithful to documented behaviour, for the tests, the demo and
//! the benchmarks of a product that syncs `authorizationInfo.certificateUserIds` between two tenants.
//!
//! [`Emulator::start`] serves the same routes on HTTP and HTTPS (a CA generated at start): the Entra token endpoint,
//! the App Service managed identity endpoint, Graph under `/v1.0/` and `/beta/`, and an admin API under
//! `/_emulator/`. [`Directory`] is the typed back door. Behaviour is cited from Microsoft's documentation by page
//! name in brackets, e.g. `[json-batching]`; it is never kinder than Graph.

mod admin;
mod auth;
mod directory;
mod faults;
mod graph;
mod jwt;
mod model;
mod notify;
mod options;
mod pki;
pub mod scenario;
mod server;
mod state;
mod throttle;
mod tls;

pub use auth::TOKEN_EXCHANGE_AUDIENCE;
pub use directory::{Directory, DirectoryError};
pub use jwt::Claims;
pub use model::{
    AppRegistration, FederatedCredential, ManagedIdentity, NewUser, RequestKind, RequestRecord, SubscriptionRecord,
    UserRecord,
};
pub use options::{
    DeltaExpiry, EmulatorOptions, FaultKind, Faults, OddAnswers, OddAuthorizationInfo, Refill, Throttling,
};
pub use pki::{IssuedLeaf, LeafRequest};
pub use server::Emulator;
