//! The two stores a run uses, the state container and the log container, connected on first use: a cold start
//! answers the host's readiness probe without waiting for storage, and a storage outage fails runs, not start-up.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use tokio::sync::OnceCell;

use super::{AzureBlobStore, BlobStore, StorageConnection, StorageError};

/// The state store (ledger, lease, delta cursors, subscription records) and the log store (run logs).
#[derive(Debug, Clone)]
pub struct Stores {
    pub state: Arc<dyn BlobStore>,
    pub logs: Arc<dyn BlobStore>,
}

/// How to reach the stores, and the stores once reached.
pub enum LazyStores {
    Azure { target: Box<Target>, stores: OnceCell<Stores> },
    Ready(Stores),
}

/// Where the Azure stores are.
pub struct Target {
    connection: StorageConnection,
    credential: Option<Arc<dyn TokenCredential>>,
    state_container: String,
    log_container: String,
}

impl LazyStores {
    /// Azure Blob Storage (or Azurite), connected at the first [`LazyStores::get`]. `credential` authorizes
    /// identity-based connections; a connection string carries its own key.
    pub fn azure(
        connection: StorageConnection,
        credential: Option<Arc<dyn TokenCredential>>,
        state_container: String,
        log_container: String,
    ) -> Self {
        let target = Target { connection, credential, state_container, log_container };
        Self::Azure { target: Box::new(target), stores: OnceCell::new() }
    }

    /// The stores, connecting them on the first call; a failed connection is tried again on the next.
    pub async fn get(&self) -> Result<&Stores, StorageError> {
        match self {
            Self::Ready(stores) => Ok(stores),
            Self::Azure { target, stores } => {
                stores
                    .get_or_try_init(|| async {
                        let credential = target.credential.clone();
                        let state =
                            AzureBlobStore::connect(&target.connection, credential.clone(), &target.state_container)
                                .await?;
                        let logs =
                            AzureBlobStore::connect(&target.connection, credential, &target.log_container).await?;
                        Ok(Stores { state: Arc::new(state), logs: Arc::new(logs) })
                    })
                    .await
            }
        }
    }
}
