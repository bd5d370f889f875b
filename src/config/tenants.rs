//! The two tenants and the cloud they are in: each tenant's id and credential (`TENANT_A_*`, `TENANT_B_*`,
//! `MANAGED_IDENTITY_CLIENT_ID`), and how Graph and the authority are reached (`AZURE_CLOUD`, `GRAPH_ENDPOINT`,
//! `AUTHORITY_HOST`, `EXTRA_CA_CERTIFICATE_PATH`).

use std::path::PathBuf;

use secrecy::SecretString;

use super::names::*;
use super::{MAX_CA_PEM_BYTES, Reader, read_small_file};
use crate::domain::{Side, TenantId};
use crate::graph::{CloudEndpoints, TenantCredential};

/// One tenant: who it is, how to reach Graph there, and which credential to use.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub tenant_id: TenantId,
    pub credential: TenantCredential,
}

/// Reads one tenant's settings; Tenant A defaults to its managed identity, Tenant B to a client secret.
pub(super) fn read_tenant(r: &mut Reader<'_>, side: Side) -> Option<TenantSettings> {
    let (id, credential, client_id, secret, certificate) = match side {
        Side::TenantA => {
            (TENANT_A_ID, TENANT_A_CREDENTIAL, TENANT_A_CLIENT_ID, TENANT_A_CLIENT_SECRET, TENANT_A_CERTIFICATE_PATH)
        }
        Side::TenantB => {
            (TENANT_B_ID, TENANT_B_CREDENTIAL, TENANT_B_CLIENT_ID, TENANT_B_CLIENT_SECRET, TENANT_B_CERTIFICATE_PATH)
        }
    };
    let tenant_value = r.required(id, "the tenant's directory (tenant) id, a GUID");
    // The GUID, never a domain: the ledger, the lease, the delta cursors and the subscription records are named by
    // it, so `contoso.onmicrosoft.com` and the GUID of the same tenant would keep two ledgers and two leases (issue 18).
    let tenant_id = r.parsed(id, tenant_value, |v| match TenantId::parse(v) {
        Ok(tenant) if tenant.is_guid() => Ok(tenant),
        Ok(_) => Err(format!(
            "{v:?} is a domain name; use the tenant's ID, a GUID (Microsoft Entra admin center, Overview, Tenant ID): \
             certsync names its ledger and lease after it, so another spelling of the same tenant would start afresh"
        )),
        Err(error) => Err(error.to_string()),
    });
    let default_kind = match side {
        Side::TenantA => "managed-identity",
        Side::TenantB => "client-secret",
    };
    let kind = r.optional(credential).unwrap_or_else(|| default_kind.to_owned());
    let managed_identity = r.optional(MANAGED_IDENTITY_CLIENT_ID);
    let credential = match kind.as_str() {
        "managed-identity" => Some(TenantCredential::ManagedIdentity { client_id: managed_identity }),
        "developer-tools" => Some(TenantCredential::DeveloperTools),
        "client-secret" => {
            let client_id = r.required(client_id, "the application (client) id of the app registration in this tenant");
            let secret = r.required(secret, "the app registration's client secret (in Azure: a Key Vault reference)");
            Some(TenantCredential::ClientSecret { client_id: client_id?, secret: SecretString::from(secret?) })
        }
        "client-certificate" => {
            let client_id = r.required(client_id, "the application (client) id of the app registration in this tenant");
            let path = r.required(certificate, "the path of a PEM file holding the app's certificate and private key");
            Some(TenantCredential::ClientCertificate {
                client_id: client_id?,
                certificate_pem_path: PathBuf::from(path?),
            })
        }
        "federated-managed-identity" => {
            let client_id = r.required(
                client_id,
                "the application (client) id of the app registration that trusts the managed identity (federated credential)",
            );
            Some(TenantCredential::FederatedManagedIdentity {
                client_id: client_id?,
                managed_identity_client_id: managed_identity,
            })
        }
        other => {
            r.problem(
                credential,
                format!(
                    "must be one of managed-identity, federated-managed-identity, client-secret, client-certificate, developer-tools; not {other:?}"
                ),
            );
            None
        }
    };
    Some(TenantSettings { tenant_id: tenant_id?, credential: credential? })
}

/// The cloud's endpoints (`AZURE_CLOUD`, each overridable) and the PEM of an extra CA to trust, if one is set.
/// `GRAPH_WRITE_BUDGET`: `<writes>/<seconds>`, Graph's documented 3,000 per 150 s unless Microsoft changes it
/// [throttling-limits] (or an emulator's budget is scaled, as the benchmarks do).
pub(super) fn read_write_budget(r: &mut Reader<'_>) -> crate::graph::Budget {
    let value = r.optional(GRAPH_WRITE_BUDGET);
    r.parsed(GRAPH_WRITE_BUDGET, value, crate::graph::Budget::parse).unwrap_or(crate::graph::Budget::GRAPH_WRITES)
}

pub(super) fn read_cloud(r: &mut Reader<'_>) -> (CloudEndpoints, Option<String>) {
    let cloud_name = r.optional(AZURE_CLOUD);
    let cloud = r
        .parsed(AZURE_CLOUD, cloud_name.or_else(|| Some("public".to_owned())), |v| match v {
            "public" => Ok(CloudEndpoints::public()),
            "us-government" => Ok(CloudEndpoints::us_government()),
            "china" => Ok(CloudEndpoints::china()),
            other => Err(format!("must be public, us-government or china, not {other:?}")),
        })
        .unwrap_or_else(CloudEndpoints::public);
    let graph = r.url(GRAPH_ENDPOINT);
    let authority = r.url(AUTHORITY_HOST);
    let cloud = CloudEndpoints {
        graph: graph.unwrap_or(cloud.graph),
        authority: authority.unwrap_or(cloud.authority),
        graph_scope: cloud.graph_scope,
    };
    let ca_path = r.optional(EXTRA_CA_CERTIFICATE_PATH);
    let extra_ca_pem = r.parsed(EXTRA_CA_CERTIFICATE_PATH, ca_path, |path| {
        let pem = read_small_file(path, MAX_CA_PEM_BYTES).map_err(|e| format!("cannot read {path:?}: {e}"))?;
        if pem.contains("-----BEGIN CERTIFICATE-----") {
            Ok(pem)
        } else {
            Err(format!("{path:?} holds no PEM certificate"))
        }
    });
    (cloud, extra_ca_pem)
}
