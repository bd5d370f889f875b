//! The run lease: one writer per Tenant B, so the timer and the notification path never write concurrently.
//!
//! A blob lease on `leases/<tenant>.lock` in the state container, held for [`LEASE_DURATION`] and renewed in the
//! background every [`LEASE_RENEW_EVERY`] while the run lasts [lease-blob: a lease lasts 15–60 s or is infinite].
//! A renewal that finds the lease taken by someone else marks it lost ([`RunLease::is_lost`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::storage::{BlobStore, Lease, StorageError};

/// How long the run lease lasts between renewals (Azure allows 15–60 s): a crashed holder blocks the next run at
/// most this long, so the shortest is chosen; renewing three times per period survives one slow renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(5);
const LEASE_POLL: Duration = Duration::from_millis(250);

/// A held run lease, renewed in the background until [`RunLease::release`].
#[must_use = "a run lease is held until it is released (or expires on its own)"]
pub struct RunLease {
    store: Arc<dyn BlobStore>,
    lease: Lease,
    lost: Arc<AtomicBool>,
    renewal: tokio::task::JoinHandle<()>,
}

impl RunLease {
    /// Takes the lease on `blob`, polling for up to `wait` while someone else holds it. `Ok(None)`: still held.
    pub async fn take(store: &Arc<dyn BlobStore>, blob: &str, wait: Duration) -> Result<Option<Self>, StorageError> {
        let deadline = Instant::now() + wait;
        let lease = loop {
            match store.acquire_lease(blob, LEASE_DURATION).await? {
                Some(lease) => break lease,
                None if Instant::now() + LEASE_POLL < deadline => tokio::time::sleep(LEASE_POLL).await,
                None => return Ok(None),
            }
        };
        let lost = Arc::new(AtomicBool::new(false));
        let renewal = {
            let (store, lease, lost) = (store.clone(), lease.clone(), lost.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_RENEW_EVERY).await;
                    if let Err(error) = store.renew_lease(&lease).await {
                        tracing::warn!(%error, "could not renew the run lease");
                        if matches!(error, StorageError::LeaseLost { .. }) {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        };
        Ok(Some(Self { store: store.clone(), lease, lost, renewal }))
    }

    /// Whether a renewal found the lease taken: another run may be writing to the same tenant.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops renewing and gives the lease up.
    pub async fn release(self) -> Result<(), StorageError> {
        self.renewal.abort();
        self.store.release_lease(self.lease).await
    }
}
