//! Blob storage: the app's durable state (JSON documents), its lock (a blob lease) and its audit trail (run logs).
//!
//! Everything above this module talks to a [`BlobStore`]; two implementations exist:
//! - [`AzureBlobStore`]: Azure Blob Storage or Azurite through the official `azure_storage_blob` SDK;
//! - [`LocalDirStore`]: a directory, for the demo and for administrators running the CLI without Azure.
//!
//! On top of any store: [`read_json`] / [`update_json`] (read-modify-write guarded by ETags, so concurrent runs never
//! lose an update, and a corrupt document stops the run instead of being replaced) and [`upload_run_log`].
//!
//! ## Authentication decision
//! `azure_storage_blob` 1.x cannot sign requests with an account key (Azure/azure-sdk-for-rust#2975), and it only
//! sends a `TokenCredential` over https, which Azurite does not speak by default. So:
//! - **connection strings** (`UseDevelopmentStorage=true`, `AccountName=…;AccountKey=…;BlobEndpoint=…` or
//!   `DefaultEndpointsProtocol` + `EndpointSuffix`): we derive a **service SAS** for the container from the account
//!   key ourselves (HMAC-SHA256 over the string-to-sign of "Create a service SAS", `sv=2022-11-02`, `sr=c`,
//!   `sp=racwdl`, valid one hour, re-signed 15 minutes before expiry) and the SDK client runs without a credential.
//!   Creating the container is not allowed to a service SAS, so `connect` does that single call with an **account
//!   SAS** limited to it (`ss=b&srt=c&sp=c`). Both work against Azurite and Azure (`sas.rs`).
//! - **identity-based settings** (`<prefix>__blobServiceUri`, optional `__clientId`): the caller's
//!   `Arc<dyn TokenCredential>` (managed identity) authorizes every request.
//!
//! Secrets (the account key, a SAS `sig`, tokens) never reach `Debug` output, error messages or logs: the types that
//! hold them implement `Debug` by hand and SDK errors are flattened and redacted into [`BackendError`].

mod azure;
mod body;
mod connection;
mod error;
mod json;
mod local;
mod run_log;
mod sas;
mod stores;

use std::{fmt, time::Duration};

pub use azure::{AzureBlobStore, AzureBlobStoreOptions};
pub use body::WriteBody;
pub use connection::{
    ConnectionStringParts, DEVELOPMENT_STORAGE_ACCOUNT, DEVELOPMENT_STORAGE_BLOB_ENDPOINT, DEVELOPMENT_STORAGE_KEY,
    StorageConnection, parse_connection_string,
};
pub use error::{BackendError, StorageError};
pub use json::{read_json, update_json};
pub use local::LocalDirStore;
pub use run_log::{
    RUN_LOG_STDOUT_PREFIX, RetryPolicy, UploadOutcome, print_run_log, run_log_names, upload_run_log,
    upload_run_log_with_fallback,
};
pub use stores::{LazyStores, Stores};

/// A blob's entity tag: changes whenever the content does. Opaque; compare, don't parse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(String);

impl ETag {
    pub fn new(value: impl Into<String>) -> Self {
        ETag(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A blob's content and the ETag it had when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub bytes: Vec<u8>,
    pub etag: ETag,
}

/// A lease held on a blob. Renew it before its duration runs out; release it when done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    blob: String,
    id: String,
}

impl Lease {
    /// The leased blob's name.
    pub fn blob(&self) -> &str {
        &self.blob
    }

    /// The lease id (a GUID; not a secret, but only its holder should use it).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Azure accepts lease durations of 15 to 60 seconds ("Lease Blob"); both stores clamp to that range.
pub const MIN_LEASE: Duration = Duration::from_secs(15);
/// See [`MIN_LEASE`].
pub const MAX_LEASE: Duration = Duration::from_secs(60);

fn lease_seconds(duration: Duration) -> i32 {
    // Clamped to 15..=60, so the cast cannot truncate.
    duration.clamp(MIN_LEASE, MAX_LEASE).as_secs() as i32
}

/// A flat namespace of blobs (names may contain `/`), with conditional writes and leases.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// The blob's content and ETag, or `None` if it does not exist.
    async fn get(&self, name: &str) -> Result<Option<StoredBlob>, StorageError>;

    /// Optimistic concurrency: write only if the blob's ETag is `expected` (None = only if it does not exist yet).
    /// Returns the new ETag; [`StorageError::ConditionNotMet`] when the condition fails,
    /// [`StorageError::LeaseHeld`] when the blob is leased.
    async fn put_if(
        &self,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
        expected: Option<&ETag>,
    ) -> Result<ETag, StorageError>;

    /// Unconditional write (logs, reports: names never collide).
    async fn put(&self, name: &str, body: Vec<u8>, content_type: &str) -> Result<(), StorageError>;

    /// [`Self::put`] for a body too large to hold whole: `write` writes it out and the store takes it as it is
    /// written (see [`WriteBody`]). Nothing is stored unless the whole body was written: a failing `write` leaves the
    /// blob as it was.
    async fn put_streamed(&self, name: &str, content_type: &str, write: WriteBody) -> Result<(), StorageError>;

    /// Take the lease on `name` (creating an empty blob if missing); Ok(None) when someone else holds it.
    /// `duration` is clamped to [`MIN_LEASE`]..=[`MAX_LEASE`].
    async fn acquire_lease(&self, name: &str, duration: Duration) -> Result<Option<Lease>, StorageError>;

    /// Extend the lease by its duration. [`StorageError::LeaseLost`] if it expired and was taken.
    async fn renew_lease(&self, lease: &Lease) -> Result<(), StorageError>;

    /// Give the lease up. [`StorageError::LeaseLost`] if it had already been taken.
    async fn release_lease(&self, lease: Lease) -> Result<(), StorageError>;

    /// Names of the blobs starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// Removes the blob: `Ok(false)` if there was none, [`StorageError::LeaseHeld`] while it is leased. Nothing in a
    /// run deletes state; this is what an operator (or the fault suite, playing one) does to a ledger.
    async fn delete(&self, name: &str) -> Result<bool, StorageError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_durations_are_clamped_to_what_azure_accepts() {
        let cases = [(0, 15), (15, 15), (30, 30), (60, 60), (3600, 60)];
        for (requested, expected) in cases {
            assert_eq!(lease_seconds(Duration::from_secs(requested)), expected, "{requested} s");
        }
    }
}
