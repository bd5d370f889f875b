//! How each tenant is authenticated: the credential kinds the project supports, the cloud endpoints they talk to,
//! and [`build_credential`], which turns both into an `azure_identity` [`TokenCredential`]. The credentials cache
//! their tokens, so callers ask for a token on every request.

use std::{path::PathBuf, sync::Arc, time::Duration};

use azure_core::{
    cloud::{CloudConfiguration, CustomConfiguration},
    credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions},
    http::{ClientMethodOptions, ClientOptions, Transport},
};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, AzureDeveloperCliCredential, AzureDeveloperCliCredentialOptions,
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::GraphError;
use crate::domain::TenantId;

/// How the app authenticates to one tenant.
#[derive(Debug, Clone)]
pub enum TenantCredential {
    /// A managed identity of the Function App (user-assigned when `client_id` is set): Tenant A, in Azure.
    /// Read from `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` (App Service) or IMDS when the credential is built.
    ManagedIdentity { client_id: Option<String> },
    /// An app registration with a client secret: Tenant B.
    ClientSecret { client_id: String, secret: SecretString },
    /// An app registration with a certificate; the PEM file holds the certificate and its private key: Tenant B.
    ClientCertificate { client_id: String, certificate_pem_path: PathBuf },
    /// A multi-tenant app registered in **Tenant A** (a managed identity can only be trusted by an app of its own
    /// tenant, AADSTS700236) that trusts the Function App's managed identity through a federated identity credential,
    /// and has a service principal with the permissions in Tenant B: no secret anywhere. The managed identity's token
    /// for `api://AzureADTokenExchange` is the client assertion presented to Tenant B's authority.
    FederatedManagedIdentity { client_id: String, managed_identity_client_id: Option<String> },
    /// Whatever `az login` (or `azd auth login`) holds: local development only.
    DeveloperTools,
}

impl TenantCredential {
    /// A short, secret-free name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            TenantCredential::ManagedIdentity { .. } => "managed identity",
            TenantCredential::ClientSecret { .. } => "client secret",
            TenantCredential::ClientCertificate { .. } => "client certificate",
            TenantCredential::FederatedManagedIdentity { .. } => "federated credential (managed identity assertion)",
            TenantCredential::DeveloperTools => "developer tools (Azure CLI / Azure Developer CLI)",
        }
    }
}

/// The endpoints of one national cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudEndpoints {
    /// Microsoft Graph, e.g. `https://graph.microsoft.com`.
    pub graph: Url,
    /// The Entra authority host, e.g. `https://login.microsoftonline.com`.
    pub authority: Url,
    /// The scope asked for in tokens, e.g. `https://graph.microsoft.com/.default`.
    pub graph_scope: String,
}

impl CloudEndpoints {
    pub fn public() -> Self {
        Self::from_hosts("https://graph.microsoft.com", "https://login.microsoftonline.com")
    }

    pub fn us_government() -> Self {
        Self::from_hosts("https://graph.microsoft.us", "https://login.microsoftonline.us")
    }

    pub fn china() -> Self {
        Self::from_hosts("https://microsoftgraph.chinacloudapi.cn", "https://login.chinacloudapi.cn")
    }

    fn from_hosts(graph: &str, authority: &str) -> Self {
        Self {
            graph: Url::parse(graph).expect("static URL"),
            authority: Url::parse(authority).expect("static URL"),
            graph_scope: format!("{graph}/.default"),
        }
    }

    /// The audience a managed identity's token must have to serve as a federated client assertion; it differs per
    /// national cloud (Entra "workload identity federation" documentation).
    pub fn token_exchange_scope(&self) -> &'static str {
        let host = self.authority.host_str().unwrap_or_default();
        if host.ends_with(".us") {
            "api://AzureADTokenExchangeUSGov/.default"
        } else if host.ends_with(".cn") {
            "api://AzureADTokenExchangeChina/.default"
        } else {
            "api://AzureADTokenExchange/.default"
        }
    }
}

/// Builds the credential for one tenant. `extra_ca_pem` adds a trusted root (the emulator's test CA, or a private
/// cloud's) to the credential's HTTPS client.
///
/// Managed identity reads its environment here, not on first use.
pub fn build_credential(
    tenant: &TenantId,
    credential: &TenantCredential,
    cloud: &CloudEndpoints,
    extra_ca_pem: Option<&str>,
) -> Result<Arc<dyn TokenCredential>, GraphError> {
    let kind = credential.kind();
    let failed = |error: azure_core::Error| GraphError::credential(tenant, kind, error);
    let client_options = client_options(cloud, extra_ca_pem)?;
    match credential {
        TenantCredential::ManagedIdentity { client_id } => {
            let credential = managed_identity(client_id.as_deref(), client_options).map_err(failed)?;
            Ok(credential)
        }
        TenantCredential::ClientSecret { client_id, secret } => {
            let credential = ClientSecretCredential::new(
                tenant.as_str(),
                client_id.clone(),
                Secret::new(secret.expose_secret().to_owned()),
                Some(ClientSecretCredentialOptions { client_options }),
            )
            .map_err(failed)?;
            Ok(credential)
        }
        TenantCredential::ClientCertificate { .. } => Err(GraphError::NotSupported(
            "client certificate credentials need an RSA/ECDSA signing library (azure_identity's own needs \
             OpenSSL); use ClientSecret or FederatedManagedIdentity for this tenant"
                .to_owned(),
        )),
        TenantCredential::FederatedManagedIdentity { client_id, managed_identity_client_id } => {
            let identity =
                managed_identity(managed_identity_client_id.as_deref(), client_options.clone()).map_err(failed)?;
            let assertion = ManagedIdentityAssertion { identity, scope: cloud.token_exchange_scope() };
            let credential = ClientAssertionCredential::new(
                tenant.as_str().to_owned(),
                client_id.clone(),
                assertion,
                Some(ClientAssertionCredentialOptions { client_options }),
            )
            .map_err(failed)?;
            Ok(credential)
        }
        TenantCredential::DeveloperTools => {
            let credential = DeveloperTools::for_tenant(tenant).map_err(failed)?;
            Ok(Arc::new(credential))
        }
    }
}

fn client_options(cloud: &CloudEndpoints, extra_ca_pem: Option<&str>) -> Result<ClientOptions, GraphError> {
    let mut custom = CustomConfiguration::default();
    custom.authority_host = cloud.authority.as_str().trim_end_matches('/').to_owned();
    let mut options = ClientOptions { cloud: Some(Arc::new(CloudConfiguration::Custom(custom))), ..Default::default() };
    if let Some(pem) = extra_ca_pem {
        let client = http_client(Some(pem), None)?;
        options.transport = Some(Transport::new(Arc::new(client)));
    }
    Ok(options)
}

fn managed_identity(
    client_id: Option<&str>,
    client_options: ClientOptions,
) -> azure_core::Result<Arc<ManagedIdentityCredential>> {
    ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.map(|id| UserAssignedId::ClientId(id.to_owned())),
        client_options,
    }))
}

/// A reqwest client (rustls) trusting the platform roots plus `extra_ca_pem`; shared by the credentials and the
/// Graph client so both trust the same roots.
pub(crate) fn http_client(
    extra_ca_pem: Option<&str>,
    timeout: Option<Duration>,
) -> Result<reqwest::Client, GraphError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // Graph and Entra do not redirect API calls; following a redirect could carry the bearer token elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("certsync/", env!("CARGO_PKG_VERSION")));
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(pem) = extra_ca_pem {
        let roots = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|error| GraphError::Configuration(format!("the extra CA is not valid PEM: {error}")))?;
        if roots.is_empty() {
            return Err(GraphError::Configuration("the extra CA PEM holds no certificate".to_owned()));
        }
        builder = builder.tls_certs_merge(roots);
    }
    builder.build().map_err(|error| GraphError::Configuration(format!("could not build the HTTPS client: {error}")))
}

/// Feeds a managed identity's token to [`ClientAssertionCredential`] (workload identity federation: the Tenant B
/// app trusts the managed identity's issuer and subject, so no secret exists anywhere).
#[derive(Debug)]
struct ManagedIdentityAssertion {
    identity: Arc<ManagedIdentityCredential>,
    scope: &'static str,
}

#[async_trait::async_trait]
impl ClientAssertion for ManagedIdentityAssertion {
    async fn secret(&self, options: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let options = options.map(|method_options| TokenRequestOptions { method_options });
        // The managed identity credential caches its token, so this is cheap on every exchange.
        let token = self.identity.get_token(&[self.scope], options).await?;
        Ok(token.token.secret().to_owned())
    }
}

/// `DeveloperToolsCredential` pinned to one tenant: with two tenants in play, the CLI's default tenant is wrong for
/// at least one of them, and `DeveloperToolsCredential` cannot be told which tenant to use.
#[derive(Debug)]
struct DeveloperTools {
    sources: Vec<Arc<dyn TokenCredential>>,
}

impl DeveloperTools {
    fn for_tenant(tenant: &TenantId) -> azure_core::Result<Self> {
        let tenant_id = Some(tenant.as_str().to_owned());
        Ok(Self {
            sources: vec![
                AzureCliCredential::new(Some(AzureCliCredentialOptions {
                    tenant_id: tenant_id.clone(),
                    ..Default::default()
                }))?,
                AzureDeveloperCliCredential::new(Some(AzureDeveloperCliCredentialOptions {
                    tenant_id,
                    ..Default::default()
                }))?,
            ],
        })
    }
}

#[async_trait::async_trait]
impl TokenCredential for DeveloperTools {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let mut failures = Vec::new();
        for source in &self.sources {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => return Ok(token),
                Err(error) => failures.push(error.to_string()),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!("neither the Azure CLI nor the Azure Developer CLI gave a token: {}", failures.join("; ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_clouds_use_their_own_hosts_and_exchange_audiences() {
        let cases = [
            (CloudEndpoints::public(), "https://graph.microsoft.com/.default", "api://AzureADTokenExchange/.default"),
            (
                CloudEndpoints::us_government(),
                "https://graph.microsoft.us/.default",
                "api://AzureADTokenExchangeUSGov/.default",
            ),
            (
                CloudEndpoints::china(),
                "https://microsoftgraph.chinacloudapi.cn/.default",
                "api://AzureADTokenExchangeChina/.default",
            ),
        ];
        for (cloud, scope, exchange) in cases {
            assert_eq!(cloud.graph_scope, scope);
            assert_eq!(cloud.token_exchange_scope(), exchange, "{cloud:?}");
        }
    }

    #[test]
    fn a_bad_extra_ca_is_a_configuration_error() {
        let error = http_client(Some("not a pem"), None).unwrap_err();
        assert!(matches!(error, GraphError::Configuration(_)), "{error}");
    }
}
