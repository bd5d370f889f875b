//! The run lease: one writer per Tenant B, so the timer and the notification path never write concurrently.
//!
//! A blob lease on `leases/<tenant>.lock` in the state container, held for [`LEASE_DURATION`] and renewed in the
//! background every [`LEASE_RENEW_EVERY`] while the run lasts [lease-blob: a lease lasts 15–60 s or is infinite].
//! A renewal that finds the lease taken by someone else marks it lost ([`RunLease::is_lost`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::apply::WritePermit;
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
    /// When the lease was last taken or renewed: it is surely ours until [`LEASE_DURATION`] after that.
    renewed_at: Arc<Mutex<Instant>>,
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
        let renewed_at = Arc::new(Mutex::new(Instant::now()));
        let renewal = {
            let (store, lease, lost, renewed_at) = (store.clone(), lease.clone(), lost.clone(), renewed_at.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_RENEW_EVERY).await;
                    if !renew(store.as_ref(), &lease, &lost, &renewed_at).await {
                        return;
                    }
                }
            })
        };
        Ok(Some(Self { store: store.clone(), lease, lost, renewed_at, renewal }))
    }

    /// Whether a renewal found the lease taken: another run may be writing to the same tenant.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Renews the lease now. `Ok`: it is ours for at least the next [`LEASE_DURATION`] minus the time a renewal
    /// may take; a renewal that fails for another reason than a lost lease still leaves it ours until
    /// [`LEASE_DURATION`] after the last good one, less [`LEASE_RENEW_EVERY`] of margin.
    pub async fn confirm(&self) -> Result<(), String> {
        if !self.is_lost() && renew(self.store.as_ref(), &self.lease, &self.lost, &self.renewed_at).await {
            return Ok(());
        }
        if self.is_lost() {
            return Err("the run lease was lost: another run may be writing to this tenant".to_owned());
        }
        let since = self.renewed_at.lock().map(|at| at.elapsed()).unwrap_or(LEASE_DURATION);
        if since + LEASE_RENEW_EVERY < LEASE_DURATION {
            Ok(())
        } else {
            Err(format!("the run lease could not be renewed for {} s: this run may no longer hold it", since.as_secs()))
        }
    }

    /// Stops renewing and gives the lease up.
    pub async fn release(self) -> Result<(), StorageError> {
        self.renewal.abort();
        self.store.release_lease(self.lease).await
    }
}

#[async_trait::async_trait]
impl WritePermit for RunLease {
    async fn confirm(&self) -> Result<(), String> {
        RunLease::confirm(self).await
    }
}

/// One renewal. `false`: the lease is lost (someone else holds it now), stop renewing.
async fn renew(store: &dyn BlobStore, lease: &Lease, lost: &AtomicBool, renewed_at: &Mutex<Instant>) -> bool {
    let started = Instant::now();
    match store.renew_lease(lease).await {
        Ok(()) => {
            if let Ok(mut at) = renewed_at.lock() {
                *at = started;
            }
            true
        }
        Err(error) => {
            tracing::warn!(%error, "could not renew the run lease");
            if matches!(error, StorageError::LeaseLost { .. }) {
                lost.store(true, Ordering::SeqCst);
                return false;
            }
            true
        }
    }
}
