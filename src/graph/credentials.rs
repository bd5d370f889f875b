//! How each tenant is authenticated: the credential kinds the project supports, the cloud endpoints they talk to,
//! and [`build_credential`], which turns both into an `azure_identity` [`TokenCredential`]. The credentials cache
//! their tokens, so callers ask for a token on every request.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use azure_core::error::ErrorKind;
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
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rustls::{
    SignatureAlgorithm, SignatureScheme,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::{CertifiedKey, Signer},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};
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
    /// An app registration with a certificate; the PEM file holds the certificate (first) and its unencrypted RSA
    /// private key (`PRIVATE KEY` or `RSA PRIVATE KEY`): Tenant B. Entra accepts only RSA certificates. The file is
    /// read once, when the credential is built.
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
        TenantCredential::ClientCertificate { client_id, certificate_pem_path } => {
            let assertion =
                CertificateAssertion::from_pem_file(certificate_pem_path, client_id, token_endpoint(cloud, tenant))
                    .map_err(|message| failed(azure_core::Error::with_message(ErrorKind::Credential, message)))?;
            let credential = ClientAssertionCredential::new(
                tenant.as_str().to_owned(),
                client_id.clone(),
                assertion,
                Some(ClientAssertionCredentialOptions { client_options }),
            )
            .map_err(failed)?;
            Ok(credential)
        }
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

/// The tenant's token endpoint, as `ClientAssertionCredential` builds it from the authority host: the `aud` of a
/// certificate assertion.
fn token_endpoint(cloud: &CloudEndpoints, tenant: &TenantId) -> String {
    let path = format!("/{}/oauth2/v2.0/token", tenant.as_str());
    cloud.authority.join(&path).map(String::from).unwrap_or_else(|_| format!("{}{}", cloud.authority, &path[1..]))
}

/// How long a certificate assertion is valid: Entra advises a short lifetime, 5 to 10 minutes after `nbf`.
const ASSERTION_LIFETIME_SECS: i64 = 600;

/// Signs the client assertions of a certificate credential for [`ClientAssertionCredential`]
/// ([certificate-credentials] "Assertion format"): PS256 (RSA-PSS with SHA-256), the `x5t#S256` thumbprint the
/// current documentation asks for and the legacy SHA-1 `x5t`; `iss` = `sub` = the client id, `aud` = the token
/// endpoint, a fresh `jti`, valid for [`ASSERTION_LIFETIME_SECS`]. A new assertion is signed whenever the credential
/// asks Entra for a token (its cache is empty or expiring).
///
/// RSA keys only: Entra refuses ECDSA and EdDSA client assertions (AADSTS5002730), so such a key is refused when the
/// credential is built. Signing uses aws-lc-rs through rustls, not OpenSSL (which `azure_identity`'s own
/// `ClientCertificateCredential` needs).
struct CertificateAssertion {
    client_id: String,
    audience: String,
    /// The encoded JOSE header: fixed for the certificate.
    header: String,
    signer: Box<dyn Signer>,
}

impl std::fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: only what identifies the assertion.
        f.debug_struct("CertificateAssertion")
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl CertificateAssertion {
    /// Reads the certificate (the first `CERTIFICATE` section) and its private key from `path`. Errors name the file
    /// and say what is wrong with it, never its contents.
    fn from_pem_file(path: &Path, client_id: &str, audience: String) -> Result<Self, String> {
        let shown = path.display();
        let pem =
            std::fs::read(path).map_err(|error| format!("cannot read the certificate file '{shown}': {error}"))?;
        let certificate = match CertificateDer::pem_slice_iter(&pem).next() {
            Some(Ok(certificate)) => certificate,
            Some(Err(error)) => {
                return Err(format!("the certificate file '{shown}' is not valid PEM: {}", pem_problem(&error)));
            }
            None => {
                return Err(format!("the certificate file '{shown}' holds no certificate (no CERTIFICATE section)"));
            }
        };
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
            rustls::pki_types::pem::Error::NoItemsFound => format!(
                "the certificate file '{shown}' holds no private key (no PRIVATE KEY or RSA PRIVATE KEY section; an \
                 encrypted key must be decrypted first)"
            ),
            other => format!("the certificate file '{shown}' is not valid PEM: {}", pem_problem(&other)),
        })?;
        let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|_| {
            format!("the private key in '{shown}' is not a usable RSA key (RSA keys need at least 2048 bits)")
        })?;
        if key.algorithm() != SignatureAlgorithm::RSA {
            return Err(format!(
                "the private key in '{shown}' is an {:?} key: Entra accepts only RSA certificates as app credentials",
                key.algorithm()
            ));
        }
        CertifiedKey::new(vec![certificate.clone()], key.clone())
            .keys_match()
            .map_err(|_| format!("the private key in '{shown}' does not belong to the file's first certificate"))?;
        let signer = key
            .choose_scheme(&[SignatureScheme::RSA_PSS_SHA256])
            .ok_or_else(|| format!("the private key in '{shown}' cannot sign with RSA-PSS SHA-256"))?;
        let header = serde_json::json!({
            "alg": "PS256",
            "typ": "JWT",
            "x5t": URL_SAFE_NO_PAD.encode(Sha1::digest(&certificate)),
            "x5t#S256": URL_SAFE_NO_PAD.encode(Sha256::digest(&certificate)),
        });
        Ok(Self {
            client_id: client_id.to_owned(),
            audience,
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            signer,
        })
    }

    /// A signed assertion valid from `now` (Unix seconds).
    fn assertion(&self, now: i64) -> Result<String, rustls::Error> {
        let claims = serde_json::json!({
            "aud": self.audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!("{}.{}", self.header, URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.signer.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(&self, _options: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.assertion(now).map_err(|error| {
            azure_core::Error::with_message(
                ErrorKind::Credential,
                format!("could not sign the client assertion: {error}"),
            )
        })
    }
}

/// What is wrong with a PEM file, without quoting it.
fn pem_problem(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::MissingSectionEnd { .. } => "a section has no END line".to_owned(),
        Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".to_owned(),
        Error::Base64Decode(_) => "a section is not valid base64".to_owned(),
        Error::Io(error) => error.to_string(),
        Error::NoItemsFound => "no PEM section".to_owned(),
        Error::SectionTooLarge => "a section is too large".to_owned(),
        _ => "unreadable".to_owned(),
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

    /// An RSA certificate and its key, as one PEM file.
    fn rsa_pem() -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let certificate =
            rcgen::CertificateParams::new(vec!["certsync.test".to_owned()]).unwrap().self_signed(&key).unwrap();
        (format!("{}{}", certificate.pem(), key.serialize_pem()), certificate.der().to_vec())
    }

    fn write_temp(contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("certsync-unit-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn a_certificate_assertion_has_the_documented_header_and_claims() {
        let (pem, der) = rsa_pem();
        let path = write_temp(&pem);
        let tenant = TenantId::parse("aaaaaaaa-0000-4000-8000-00000000000a").unwrap();
        let audience = token_endpoint(&CloudEndpoints::public(), &tenant);
        let assertion = CertificateAssertion::from_pem_file(&path, "client-1", audience).unwrap();
        std::fs::remove_file(&path).unwrap();

        let jwt = assertion.assertion(1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();

        assert_eq!(parts.len(), 3);
        let header = decode(parts[0]);
        assert_eq!(header["alg"], "PS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["x5t#S256"], URL_SAFE_NO_PAD.encode(Sha256::digest(&der)));
        assert_eq!(header["x5t"], URL_SAFE_NO_PAD.encode(Sha1::digest(&der)));
        let claims = decode(parts[1]);
        assert_eq!(
            claims["aud"],
            "https://login.microsoftonline.com/aaaaaaaa-0000-4000-8000-00000000000a/oauth2/v2.0/token"
        );
        assert_eq!((claims["iss"].as_str(), claims["sub"].as_str()), (Some("client-1"), Some("client-1")));
        assert_eq!((claims["nbf"].as_i64(), claims["iat"].as_i64()), (Some(1_700_000_000), Some(1_700_000_000)));
        assert_eq!(claims["exp"].as_i64(), Some(1_700_000_600));
        assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
        let again = assertion.assertion(1_700_000_000).unwrap();
        assert_ne!(decode(again.split('.').nth(1).unwrap())["jti"], claims["jti"], "a fresh jti every time");
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 256, "an RSA-2048 signature");
        assert!(!format!("{assertion:?}").contains("PRIVATE"), "Debug shows no key");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_the_file() {
        let (pem, _) = rsa_pem();
        let (other, _) = rsa_pem();
        let certificate = pem.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap();
        let key = other.split_inclusive("-----END CERTIFICATE-----\n").nth(1).unwrap();
        let path = write_temp(&format!("{certificate}{key}"));

        let error = CertificateAssertion::from_pem_file(&path, "client-1", "aud".to_owned()).unwrap_err();
        std::fs::remove_file(&path).unwrap();

        assert!(error.contains(&path.display().to_string()) && error.contains("does not belong"), "{error}");
    }

    #[test]
    fn a_bad_extra_ca_is_a_configuration_error() {
        let error = http_client(Some("not a pem"), None).unwrap_err();
        assert!(matches!(error, GraphError::Configuration(_)), "{error}");
    }
}
