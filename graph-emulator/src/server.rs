//! The running emulator: two listeners (HTTP and HTTPS) on 127.0.0.1 serving the same routes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Extension;
use axum::Router;
use axum::routing::{any, get, post};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

use crate::directory::{Directory, lock};
use crate::faults::FaultState;
use crate::jwt::Signer;
use crate::options::{EmulatorOptions, Faults};
use crate::state::{AppState, BaseUrl};

/// Path of the App Service managed identity endpoint on the HTTP listener.
const MSI_PATH: &str = "msi/token";

/// The running emulator. Dropping it (or [`Emulator::shutdown`]) stops its servers.
pub struct Emulator {
    http_url: Url,
    https_url: Url,
    ca_pem: String,
    state: Arc<AppState>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("http_url", &self.http_url.as_str())
            .field("https_url", &self.https_url.as_str())
            .finish_non_exhaustive()
    }
}

/// Every route, on whichever listener; the listener adds its own [`BaseUrl`].
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(crate::auth::token))
        .route(&format!("/{MSI_PATH}"), get(crate::auth::managed_identity))
        .route("/v1.0/{*rest}", any(crate::graph::entry))
        .route("/beta/{*rest}", any(crate::graph::entry))
        .route("/_pki/{tenant}/{file}", get(ca_certificate))
        .merge(crate::admin::router())
        .with_state(state)
}

/// A CA certificate at its `certificateDownloadUrl` (`/_pki/{tenant}/{id}.cer`): public, like Microsoft's PKI
/// distribution points, so no token is checked.
async fn ca_certificate(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    axum::extract::Path((tenant, file)): axum::extract::Path<(String, String)>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let id = file.strip_suffix(".cer").unwrap_or(&file);
    match state.directory.cloud_ca_certificate(&tenant, id) {
        Some(der) => ([(axum::http::header::CONTENT_TYPE, "application/pkix-cert")], der).into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

impl Emulator {
    /// Binds `127.0.0.1:0` twice (HTTP, HTTPS) and serves until dropped.
    pub async fn start(options: EmulatorOptions) -> anyhow::Result<Emulator> {
        Self::start_on(options, 0).await
    }

    /// Like [`Emulator::start`], with the HTTP listener on a given port (0: any); HTTPS takes any port.
    pub async fn start_on(options: EmulatorOptions, http_port: u16) -> anyhow::Result<Emulator> {
        let http_listener =
            TcpListener::bind(("127.0.0.1", http_port)).await.context("Failed to bind the HTTP listener")?;
        let https_listener = TcpListener::bind(("127.0.0.1", 0)).await.context("Failed to bind the HTTPS listener")?;
        let http_url = Url::parse(&format!("http://127.0.0.1:{}/", http_listener.local_addr()?.port()))?;
        let https_url = Url::parse(&format!("https://127.0.0.1:{}/", https_listener.local_addr()?.port()))?;
        let tls = crate::tls::generate()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .add_root_certificate(
                reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).context("Failed to read the CA")?,
            )
            .build()
            .context("Failed to build the notification client")?;
        let directory = Directory::new();
        let state = Arc::new(AppState {
            directory: directory.clone(),
            signer: Signer::random(),
            latency: options.latency,
            throttling: options.throttling,
            refill: options.refill,
            allow_http_notification_urls: options.allow_http_notification_urls,
            delivery_delay: options.delivery_delay,
            faults: Mutex::new(FaultState::new(options.faults)),
            https_base: https_url.clone(),
            msi_header: uuid::Uuid::new_v4().simple().to_string(),
            client,
        });
        let app = router(state.clone());
        let http_app = app.clone().layer(Extension(BaseUrl(http_url.clone())));
        let https_app = app.layer(Extension(BaseUrl(https_url.clone())));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config);

        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        directory.set_notifier(sender);
        let tasks = vec![
            tokio::spawn(serve(http_listener, http_app, None)),
            tokio::spawn(serve(https_listener, https_app, Some(acceptor))),
            tokio::spawn(crate::notify::worker(state.clone(), receiver)),
        ];
        tracing::info!(http = %http_url, https = %https_url, "graph emulator listening");
        Ok(Emulator { http_url, https_url, ca_pem: tls.ca_pem, state, tasks })
    }

    pub fn http_url(&self) -> Url {
        self.http_url.clone()
    }

    pub fn https_url(&self) -> Url {
        self.https_url.clone()
    }

    /// The CA that signed the HTTPS listener's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The `IDENTITY_ENDPOINT` of the emulated App Service managed identity (HTTP, as on App Service).
    pub fn managed_identity_endpoint(&self) -> Url {
        self.http_url.join(MSI_PATH).unwrap_or_else(|_| self.http_url.clone())
    }

    /// The `IDENTITY_HEADER` secret.
    pub fn managed_identity_header(&self) -> &str {
        &self.state.msi_header
    }

    /// The authority host for `azure_identity` (`AZURE_AUTHORITY_HOST` / `CloudConfiguration`): the HTTPS URL.
    pub fn authority_host(&self) -> Url {
        self.https_url.clone()
    }

    /// The issuer of the managed identity's federated assertions for a tenant: `{https_url}{tenant}/v2.0`.
    pub fn assertion_issuer(&self, tenant_id: &str) -> String {
        crate::auth::assertion_issuer(&self.state, tenant_id)
    }

    pub fn directory(&self) -> Directory {
        self.state.directory.clone()
    }

    /// Replaces the fault settings (and reseeds the generator).
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.state.faults) = FaultState::new(faults);
    }

    /// Stops the servers and waits until they have stopped.
    pub async fn shutdown(mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Accepts connections until aborted; aborting drops the `JoinSet`, which ends every connection.
async fn serve(listener: TcpListener, app: Router, tls: Option<tokio_rustls::TlsAcceptor>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        None => {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
