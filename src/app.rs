//! The server process: build from settings, bind, serve until SIGTERM or Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{ServerSettings, Settings};
use crate::functions::AppState;
use crate::functions::routes::router;
use crate::graph::{TenantCredential, build_credential};
use crate::storage::{LazyStores, StorageConnection, Stores};
use crate::sync::{SetupError, SyncService, Tenants};

/// Wires the service from typed settings, once: both tenants' Graph clients, and the stores — `stores` when given
/// (a local folder for the CLI and the demo, tests), else the configured storage account, connected at the first run.
pub fn sync_service(settings: Arc<Settings>, stores: Option<Stores>) -> Result<SyncService, SetupError> {
    let tenants = Tenants::connect(&settings)?;
    let stores = match stores {
        Some(stores) => LazyStores::Ready(stores),
        None => {
            let storage = &settings.storage;
            let credential = match &storage.connection {
                StorageConnection::ConnectionString(_) => None,
                // The Function App's managed identity (`<connection>__clientId` picks a user-assigned one). A
                // managed identity belongs to no tenant's app registration; the id only labels errors.
                StorageConnection::Identity { .. } => Some(
                    build_credential(
                        &settings.tenant_a.tenant_id,
                        &TenantCredential::ManagedIdentity { client_id: storage.client_id.clone() },
                        &settings.cloud,
                        None,
                    )
                    .map_err(SetupError::StorageCredential)?,
                ),
            };
            LazyStores::azure(
                storage.connection.clone(),
                credential,
                storage.state_container.clone(),
                storage.log_container.clone(),
            )
        }
    };
    Ok(SyncService::new(settings, tenants, stores))
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds `127.0.0.1:<port>` (the host calls the handler on IPv4 loopback; port 0 picks a free one in tests).
    pub async fn build(settings: Settings, server: ServerSettings) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let sync = Arc::new(sync_service(settings, None)?);
        let state = AppState::new(sync);
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, server.port))).await?;
        Ok(Self { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(port = self.port(), "custom handler listening");
        axum::serve(self.listener, router(self.state)).with_graceful_shutdown(shutdown_signal()).await
    }
}

/// Resolves on Ctrl-C or SIGTERM (what the host and App Service send on scale-in and restarts). In-flight
/// invocations finish; a sync cut short by the platform is safe to repeat (see `sync::apply`).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight invocations");
}
