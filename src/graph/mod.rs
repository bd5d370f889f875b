//! Microsoft Graph, one client per tenant.
//!
//! This layer owns everything between "the sync wants these users / these writes" and the wire: credentials per
//! tenant and cloud ([`build_credential`]), paging, `$batch`, `ConsistencyLevel` and `$count` for advanced queries,
//! retries on throttling with `Retry-After` or jittered backoff, bounded concurrency and timeouts, metrics for the
//! run report, and errors an administrator can act on ([`GraphError`]). It makes no sync decisions: it reads and
//! writes exactly what it is asked to.
//!
//! Behaviour follows the Microsoft Graph documentation summarised in `docs/graph.md`; comments cite its page names
//! in brackets.

mod batch;
mod client;
mod credentials;
mod delta;
mod error;
mod intune_beta;
mod json;
mod metrics;
mod pacing;
mod page;
mod retry;
mod subscriptions;
mod users;

pub use batch::WriteReservation;
pub use client::{GraphClient, GraphOptions};
pub use credentials::{CloudEndpoints, TenantCredential, build_credential};
pub use delta::GroupDelta;
pub use error::{GraphError, operation};
pub use intune_beta::{CertificateStateRecord, CloudCertificationAuthority, LeafCertificateRecord};
pub use metrics::GraphMetrics;
pub use pacing::{Budget, PacingFigures};
pub use subscriptions::{NewSubscription, Subscription};
pub use users::{CREATED_DATE_TIME, DirectoryUser, GroupMembers, MembershipScope, TARGET_SELECT, USER_SELECT};

/// `localhost` or a loopback address (127.0.0.0/8, ::1): the only hosts a token or a CA certificate may travel to
/// over plain http (an emulator or Azurite on this machine).
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
