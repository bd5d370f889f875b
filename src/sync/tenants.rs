//! The Graph client of each tenant, by side: wired once from the settings ([`crate::app`]) and shared by the
//! reconciler and the subscription keeper.

use crate::config::Settings;
use crate::domain::Side;
use crate::graph::{GraphClient, GraphError, GraphMetrics, GraphOptions};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot set up the Microsoft Graph client for {side}: {source}")]
    Graph {
        side: Side,
        #[source]
        source: GraphError,
    },
    #[error("cannot build the managed identity credential for storage: {0}")]
    StorageCredential(#[source] GraphError),
}

/// Tenant A's client (the source of certificates and match keys) and Tenant B's (the one written to).
#[derive(Clone)]
pub struct Tenants {
    pub source: GraphClient,
    pub target: GraphClient,
}

impl Tenants {
    /// Builds both clients from the settings (their credentials, cloud, extra CA).
    pub fn connect(settings: &Settings) -> Result<Self, SetupError> {
        let options = GraphOptions {
            extra_ca_pem: settings.extra_ca_pem.clone(),
            write_budget: settings.graph_write_budget,
            ..GraphOptions::default()
        };
        let source = GraphClient::connect(
            settings.tenant_a.tenant_id.clone(),
            &settings.tenant_a.credential,
            &settings.cloud,
            options.clone(),
        )
        .map_err(|source| SetupError::Graph { side: Side::TenantA, source })?;
        let target = GraphClient::connect(
            settings.tenant_b.tenant_id.clone(),
            &settings.tenant_b.credential,
            &settings.cloud,
            options,
        )
        .map_err(|source| SetupError::Graph { side: Side::TenantB, source })?;
        Ok(Self { source, target })
    }

    /// The client of one side (its tenant is [`GraphClient::tenant`]).
    pub fn side(&self, side: Side) -> &GraphClient {
        match side {
            Side::TenantA => &self.source,
            Side::TenantB => &self.target,
        }
    }

    /// Both clients' counters so far (they count across runs for as long as the process lives).
    pub fn metrics(&self) -> (GraphMetrics, GraphMetrics) {
        (self.source.metrics(), self.target.metrics())
    }
}
