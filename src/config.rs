//! Every setting, read once at start-up from environment variables: what `local.settings.json` `Values` become under
//! `func start`, and what app settings become in Azure. Parsing collects **every** problem before failing, so an
//! administrator fixes a deployment in one round instead of one setting per restart.
//!
//! The names, meanings and defaults are listed in the README ("Settings"); `local.settings.sample.json` shows them.

mod schedule;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;
use url::Url;

use crate::domain::{
    CertificateSource, GroupId, KnownIssuer, MatchKey, RemovalThreshold, SerialOrder, Sha1Reading, Side, Template,
    TenantId,
};
use crate::graph::{CloudEndpoints, TenantCredential};
use crate::storage::StorageConnection;

/// One problem with one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    pub name: String,
    pub problem: String,
}

/// All the problems found, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<SettingProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} setting(s) need attention:", self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  - {}: {}", p.name, p.problem)?;
        }
        write!(f, "See README.md, section \"Settings\", for every setting with its meaning and default.")
    }
}

/// One tenant: who it is, how to reach Graph there, and which credential to use.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub tenant_id: TenantId,
    pub credential: TenantCredential,
}

/// One pair: the users of these Tenant A groups are matched to the users of these Tenant B groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSettings {
    /// A short name for logs and reports (`pair-1`, … in the order given).
    pub name: String,
    pub source_groups: Vec<GroupId>,
    pub target_groups: Vec<GroupId>,
    /// Where the certificates Intune issued to this pair's Tenant A users are read (`CERTIFICATE_SOURCE`), if any.
    pub certificate_source: Option<CertificateSource>,
}

impl PairSettings {
    /// The pair's groups in one tenant: its Tenant A (source) or its Tenant B (target) groups.
    pub fn groups(&self, side: Side) -> &[GroupId] {
        match side {
            Side::TenantA => &self.source_groups,
            Side::TenantB => &self.target_groups,
        }
    }
}

/// How issued certificates become values (issue 7; docs in [`crate::sync::issued`]).
#[derive(Debug, Clone, Default)]
pub struct CertificateSettings {
    pub serial_order: SerialOrder,
    pub sha1_reading: Sha1Reading,
    /// The CAs the connector source's issuer names are matched against (`CERTIFICATE_ISSUER_CERTIFICATES`).
    pub connector_issuers: Vec<KnownIssuer>,
}

/// What the sync core needs to know.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub pairs: Vec<PairSettings>,
    pub match_key: MatchKey,
    pub templates: Vec<Template>,
    pub transitive_membership: bool,
    pub dry_run: bool,
    pub removal_threshold: RemovalThreshold,
    pub allow_mass_removal: bool,
    pub certificates: CertificateSettings,
}

impl SyncSettings {
    /// The certificate sources some pair reads, each once.
    pub fn certificate_sources(&self) -> std::collections::BTreeSet<CertificateSource> {
        self.pairs.iter().filter_map(|p| p.certificate_source).collect()
    }
}

/// Where the audit logs and the state (ledger, lease) live.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// The connection name, e.g. `AzureWebJobsStorage`: its settings are `<name>` or `<name>__blobServiceUri`.
    pub connection_name: String,
    pub connection: StorageConnection,
    /// Client id of the user-assigned managed identity for identity-based storage (`<name>__clientId`).
    pub client_id: Option<String>,
    pub log_container: String,
    pub state_container: String,
}

/// Webhook (change notification) settings.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// The `clientState` every subscription is created with; notifications carrying anything else are dropped.
    pub client_state: Option<SecretString>,
    /// The previous secret, still accepted while subscriptions are renewed onto the new one.
    pub previous_client_state: Option<SecretString>,
    /// Where Graph posts change and lifecycle notifications (`function-webhook`'s URL with `?code=<function key>`).
    /// Set: the timer (and `certsync subscriptions`) keep a subscription alive on every configured group.
    pub notification_url: Option<NotificationUrl>,
}

/// The webhook's public URL. It carries the function key in its query (`?code=…`): a secret, so `Debug` and
/// `Display` show only scheme, host and path.
#[derive(Clone, PartialEq, Eq)]
pub struct NotificationUrl(Url);

impl NotificationUrl {
    /// HTTPS only, as Graph requires [subscription-post-subscriptions]; plain http is accepted for loopback hosts
    /// (`func start` on a workstation, the Graph emulator), which Graph itself could never reach anyway.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text.trim()).map_err(|e| format!("must be an absolute https URL ({e})"))?;
        let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            other => return Err(format!("must be an https URL (Graph refuses other schemes), not {other}://…")),
        }
        if url.host_str().is_none_or(str::is_empty) || url.fragment().is_some() {
            return Err("must be an https URL with a host and no #fragment".to_owned());
        }
        Ok(Self(url))
    }

    /// The full URL, key included: only for Graph requests.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Scheme, host, port and path: safe to log.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        let had_query = url.query().is_some();
        url.set_query(None);
        let _ = url.set_password(None);
        if had_query { format!("{url}?[redacted]") } else { url.to_string() }
    }
}

impl fmt::Debug for NotificationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NotificationUrl({})", self.redacted())
    }
}

impl fmt::Display for NotificationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tenant_a: TenantSettings,
    pub tenant_b: TenantSettings,
    pub cloud: CloudEndpoints,
    /// PEM of an extra CA to trust for Graph and the authority (a private cloud, or the Graph emulator).
    pub extra_ca_pem: Option<String>,
    pub sync: SyncSettings,
    pub storage: StorageSettings,
    pub webhook: WebhookSettings,
}

/// Settings for the server process itself (needed even when the sync settings are incomplete is *not* allowed:
/// the handler refuses to start rather than answer the host with a half-configured app).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    pub port: u16,
}

/// Where settings come from: the process environment, or a map in tests.
pub trait SettingsSource {
    fn get(&self, name: &str) -> Option<String>;
}

impl SettingsSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// The process environment. Functions app settings are case-insensitive on Windows but not on Linux: names are exact.
pub struct Environment;

impl SettingsSource for Environment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// The setting names, in one place, so the README and errors agree.
pub mod names {
    pub const TENANT_A_ID: &str = "TENANT_A_ID";
    pub const TENANT_A_CREDENTIAL: &str = "TENANT_A_CREDENTIAL";
    pub const TENANT_A_CLIENT_ID: &str = "TENANT_A_CLIENT_ID";
    pub const TENANT_A_CLIENT_SECRET: &str = "TENANT_A_CLIENT_SECRET";
    pub const TENANT_A_CERTIFICATE_PATH: &str = "TENANT_A_CERTIFICATE_PATH";
    pub const TENANT_B_ID: &str = "TENANT_B_ID";
    pub const TENANT_B_CREDENTIAL: &str = "TENANT_B_CREDENTIAL";
    pub const TENANT_B_CLIENT_ID: &str = "TENANT_B_CLIENT_ID";
    pub const TENANT_B_CLIENT_SECRET: &str = "TENANT_B_CLIENT_SECRET";
    pub const TENANT_B_CERTIFICATE_PATH: &str = "TENANT_B_CERTIFICATE_PATH";
    pub const MANAGED_IDENTITY_CLIENT_ID: &str = "MANAGED_IDENTITY_CLIENT_ID";
    pub const SYNC_PAIRS: &str = "SYNC_PAIRS";
    pub const MATCH_ON: &str = "MATCH_ON";
    pub const CERTIFICATE_USER_ID_TEMPLATES: &str = "CERTIFICATE_USER_ID_TEMPLATES";
    pub const TRANSITIVE_MEMBERSHIP: &str = "TRANSITIVE_MEMBERSHIP";
    pub const CERTIFICATE_SOURCE: &str = "CERTIFICATE_SOURCE";
    pub const CERTIFICATE_SERIAL_ORDER: &str = "CERTIFICATE_SERIAL_ORDER";
    pub const CERTIFICATE_SHA1_PUKEY: &str = "CERTIFICATE_SHA1_PUKEY";
    pub const CERTIFICATE_ISSUER_CERTIFICATES: &str = "CERTIFICATE_ISSUER_CERTIFICATES";
    pub const DRY_RUN: &str = "DRY_RUN";
    pub const REMOVAL_THRESHOLD_USERS: &str = "REMOVAL_THRESHOLD_USERS";
    pub const REMOVAL_THRESHOLD_PERCENT: &str = "REMOVAL_THRESHOLD_PERCENT";
    pub const ALLOW_MASS_REMOVAL: &str = "ALLOW_MASS_REMOVAL";
    pub const AZURE_CLOUD: &str = "AZURE_CLOUD";
    pub const GRAPH_ENDPOINT: &str = "GRAPH_ENDPOINT";
    pub const AUTHORITY_HOST: &str = "AUTHORITY_HOST";
    pub const EXTRA_CA_CERTIFICATE_PATH: &str = "EXTRA_CA_CERTIFICATE_PATH";
    pub const STORAGE_CONNECTION: &str = "STORAGE_CONNECTION";
    pub const LOG_CONTAINER: &str = "LOG_CONTAINER";
    pub const STATE_CONTAINER: &str = "STATE_CONTAINER";
    pub const SYNC_SCHEDULE: &str = "SYNC_SCHEDULE";
    pub const WEBHOOK_CLIENT_STATE: &str = "WEBHOOK_CLIENT_STATE";
    pub const WEBHOOK_PREVIOUS_CLIENT_STATE: &str = "WEBHOOK_PREVIOUS_CLIENT_STATE";
    pub const WEBHOOK_NOTIFICATION_URL: &str = "WEBHOOK_NOTIFICATION_URL";
    pub const FUNCTIONS_CUSTOMHANDLER_PORT: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
    pub const LOG_FORMAT: &str = "LOG_FORMAT";
    /// Set by App Service / Functions in Azure (not by `func start`): logs are JSON there.
    pub const WEBSITE_INSTANCE_ID: &str = "WEBSITE_INSTANCE_ID";
}

/// Collects problems while reading settings.
struct Reader<'a> {
    source: &'a dyn SettingsSource,
    problems: Vec<SettingProblem>,
}

impl<'a> Reader<'a> {
    fn new(source: &'a dyn SettingsSource) -> Self {
        Self { source, problems: Vec::new() }
    }

    fn problem(&mut self, name: &str, problem: impl Into<String>) {
        self.problems.push(SettingProblem { name: name.to_owned(), problem: problem.into() });
    }

    /// A set, non-blank value. A Key Vault or App Configuration reference that reached the process as text is no
    /// value: the platform leaves the reference itself in the environment when it cannot resolve it (Learn,
    /// app-service-key-vault-references, "Troubleshoot"), and read as a value it would be a clientState anyone can
    /// guess or a notification URL Graph cannot call. It is refused, naming the setting, never echoing the text.
    fn optional(&mut self, name: &str) -> Option<String> {
        let value = self.source.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())?;
        let lower = value.to_ascii_lowercase();
        if lower.starts_with("@microsoft.keyvault(") || lower.starts_with("@microsoft.appconfiguration(") {
            self.problem(
                name,
                "is a Key Vault reference the platform did not resolve: give the app's identity \
                 (keyVaultReferenceIdentity) Key Vault Secrets User on the secret, check that the secret exists, and \
                 see the reference's status under the app's Environment variables (docs/deployment.md)",
            );
            return None;
        }
        Some(value)
    }

    fn required(&mut self, name: &str, expected: &str) -> Option<String> {
        let value = self.optional(name);
        if value.is_none() && !self.problems.iter().any(|p| p.name == name) {
            self.problem(name, format!("is required: {expected}"));
        }
        value
    }

    fn parsed<T>(
        &mut self,
        name: &str,
        value: Option<String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = value?;
        match parse(&value) {
            Ok(parsed) => Some(parsed),
            Err(problem) => {
                self.problem(name, problem);
                None
            }
        }
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        let value = self.optional(name);
        self.parsed(name, value, |v| match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("must be true or false, not {v:?}")),
        })
        .unwrap_or(default)
    }

    fn url(&mut self, name: &str) -> Option<Url> {
        let value = self.optional(name);
        self.parsed(name, value, |v| {
            let url = Url::parse(v).map_err(|e| format!("must be an absolute URL ({e}), not {v:?}"))?;
            if url.scheme() != "https" && url.scheme() != "http" {
                return Err(format!("must be an http(s) URL, not {v:?}"));
            }
            Ok(url)
        })
    }

    fn tenant(
        &mut self,
        id: &str,
        credential: &str,
        client_id: &str,
        secret: &str,
        certificate: &str,
        side: Side,
    ) -> Option<TenantSettings> {
        let tenant_value = self.required(id, "the tenant's directory (tenant) id, a GUID");
        let tenant_id = self.parsed(id, tenant_value, |v| TenantId::parse(v).map_err(|e| e.to_string()));
        let default_kind = match side {
            Side::TenantA => "managed-identity",
            Side::TenantB => "client-secret",
        };
        let kind = self.optional(credential).unwrap_or_else(|| default_kind.to_owned());
        let managed_identity = self.optional(names::MANAGED_IDENTITY_CLIENT_ID);
        let credential = match kind.as_str() {
            "managed-identity" => Some(TenantCredential::ManagedIdentity { client_id: managed_identity }),
            "developer-tools" => Some(TenantCredential::DeveloperTools),
            "client-secret" => {
                let client_id =
                    self.required(client_id, "the application (client) id of the app registration in this tenant");
                let secret =
                    self.required(secret, "the app registration's client secret (in Azure: a Key Vault reference)");
                Some(TenantCredential::ClientSecret { client_id: client_id?, secret: SecretString::from(secret?) })
            }
            "client-certificate" => {
                let client_id =
                    self.required(client_id, "the application (client) id of the app registration in this tenant");
                let path =
                    self.required(certificate, "the path of a PEM file holding the app's certificate and private key");
                Some(TenantCredential::ClientCertificate {
                    client_id: client_id?,
                    certificate_pem_path: PathBuf::from(path?),
                })
            }
            "federated-managed-identity" => {
                let client_id = self.required(
                    client_id,
                    "the application (client) id of the app registration that trusts the managed identity (federated credential)",
                );
                Some(TenantCredential::FederatedManagedIdentity {
                    client_id: client_id?,
                    managed_identity_client_id: managed_identity,
                })
            }
            other => {
                self.problem(
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
}

/// `CERTIFICATE_SOURCE` as read: one source for every pair, or `pair-N=source` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceChoice {
    Every(Option<CertificateSource>),
    PerPair(Vec<(String, Option<CertificateSource>)>),
}

/// Reads `CERTIFICATE_SOURCE`, `CERTIFICATE_SERIAL_ORDER`, `CERTIFICATE_SHA1_PUKEY` and
/// `CERTIFICATE_ISSUER_CERTIFICATES`; `None` when one of them has a problem (already recorded).
fn read_certificate_settings(r: &mut Reader<'_>) -> Option<(SourceChoice, CertificateSettings)> {
    use names::*;
    let value = r.optional(CERTIFICATE_SOURCE).unwrap_or_default();
    let choice = r.parsed(CERTIFICATE_SOURCE, Some(value), |v| {
        if !v.contains('=') {
            return CertificateSource::parse(v).map(SourceChoice::Every);
        }
        v.split(';')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (pair, source) = entry.split_once('=').ok_or_else(|| {
                    format!("{entry:?} must look like pair-1=cloud-pki (or one source for every pair)")
                })?;
                Ok((pair.trim().to_owned(), CertificateSource::parse(source)?))
            })
            .collect::<Result<Vec<_>, String>>()
            .map(SourceChoice::PerPair)
    });
    let order_value = r.optional(CERTIFICATE_SERIAL_ORDER);
    let serial_order = r
        .parsed(CERTIFICATE_SERIAL_ORDER, order_value, |v| {
            SerialOrder::parse(v).ok_or_else(|| format!("must be {}, not {v:?}", SerialOrder::CHOICES))
        })
        .unwrap_or_default();
    let sha1_value = r.optional(CERTIFICATE_SHA1_PUKEY);
    let sha1_reading = r
        .parsed(CERTIFICATE_SHA1_PUKEY, sha1_value, |v| match Sha1Reading::parse(v) {
            Some(Sha1Reading::PublicKey) => {
                Err("public-key cannot be used: Intune's certificate records (Cloud PKI leaf certificates, connector \
                 certificate states) carry the thumbprint but not the public key. Use thumbprint, or compute a \
                 public-key value for one certificate with `certsync certificate-ids <file>`"
                    .to_owned())
            }
            Some(reading) => Ok(reading),
            None => Err(format!("must be {}, not {v:?}", Sha1Reading::CHOICES)),
        })
        .unwrap_or_default();
    let issuers_path = r.optional(CERTIFICATE_ISSUER_CERTIFICATES);
    let connector_issuers = r
        .parsed(CERTIFICATE_ISSUER_CERTIFICATES, issuers_path, |path| {
            let text = read_small_file(path, MAX_CA_PEM_BYTES).map_err(|e| format!("cannot read {path:?}: {e}"))?;
            let blocks = pem::parse_many(text.as_bytes()).map_err(|e| format!("{path:?} is not PEM: {e}"))?;
            let issuers = blocks
                .iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(|b| {
                    let dn = crate::certificates::subject_dn(b.contents());
                    dn.map(KnownIssuer::from_dn).map_err(|e| format!("{path:?}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if issuers.is_empty() {
                return Err(format!("{path:?} holds no PEM certificate"));
            }
            Ok(issuers)
        })
        .unwrap_or_default();
    Some((choice?, CertificateSettings { serial_order, sha1_reading, connector_issuers }))
}

/// Gives each pair its certificate source; an entry naming no pair is an error (a typo would silently bind nothing).
fn assign_sources(pairs: &mut [PairSettings], choice: &SourceChoice) -> Result<(), String> {
    match choice {
        SourceChoice::Every(source) => pairs.iter_mut().for_each(|p| p.certificate_source = *source),
        SourceChoice::PerPair(entries) => {
            for (name, source) in entries {
                let count = pairs.len();
                let pair = pairs
                    .iter_mut()
                    .find(|p| &p.name == name)
                    .ok_or_else(|| format!("names {name:?}, but SYNC_PAIRS has pair-1 to pair-{count}"))?;
                pair.certificate_source = *source;
            }
        }
    }
    Ok(())
}

/// A CA bundle is a few KB; this bounds what start-up reads if the path names something else.
const MAX_CA_PEM_BYTES: u64 = 1024 * 1024;

/// Reads a regular file of at most `limit` bytes. A device (`/dev/zero`) or a FIFO would make start-up read forever
/// or block forever (found by tests/hostile, corpus `settings/reject-extra-ca-endless-file.env`).
fn read_small_file(path: &str, limit: u64) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(Error::new(ErrorKind::InvalidInput, format!("larger than {limit} bytes")));
    }
    Ok(text)
}

/// Parses `SYNC_PAIRS`: `<A group>[,<A group>…]-><B group>[,<B group>…]`, pairs separated by `;`.
pub fn parse_pairs(value: &str) -> Result<Vec<PairSettings>, String> {
    let mut pairs = Vec::new();
    for (index, text) in value.split(';').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
        let name = format!("pair-{}", index + 1);
        let (sources, targets) = text
            .split_once("->")
            .ok_or_else(|| format!("{name} {text:?} must look like <Tenant A group id>-><Tenant B group id>"))?;
        let groups = |list: &str, side: Side| -> Result<Vec<GroupId>, String> {
            let groups = list
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(|g| GroupId::parse(g).map_err(|e| format!("{name}, {side}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            if groups.is_empty() {
                return Err(format!("{name} {text:?} names no {side} group"));
            }
            Ok(groups)
        };
        let (source_groups, target_groups) = (groups(sources, Side::TenantA)?, groups(targets, Side::TenantB)?);
        pairs.push(PairSettings { name, source_groups, target_groups, certificate_source: None });
    }
    if pairs.is_empty() {
        return Err("names no pair; expected <Tenant A group id>-><Tenant B group id>[;…]".to_owned());
    }
    Ok(pairs)
}

/// Storage account names are 3 to 24 characters, lower-case letters and digits only ("Storage account name", Azure
/// resource naming rules).
fn is_storage_account_name(name: &str) -> bool {
    (3..=24).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The storage connection named `name`, read the Functions way: `<name>` is a connection string, or
/// `<name>__blobServiceUri` (identity-based, with `<name>__clientId` for a user-assigned identity).
fn read_storage(reader: &mut Reader<'_>) -> Option<StorageSettings> {
    let connection_name =
        reader.optional(names::STORAGE_CONNECTION).unwrap_or_else(|| "AzureWebJobsStorage".to_owned());
    let service_uri_name = format!("{connection_name}__blobServiceUri");
    let account_name_name = format!("{connection_name}__accountName");
    let client_id = reader.optional(&format!("{connection_name}__clientId"));
    let connection = if let Some(connection_string) = reader.optional(&connection_name) {
        match crate::storage::parse_connection_string(&connection_string) {
            Ok(_) => Some(StorageConnection::ConnectionString(SecretString::from(connection_string))),
            // The error names the problem without echoing the key.
            Err(e) => {
                reader.problem(&connection_name, e.to_string());
                None
            }
        }
    } else if let Some(uri) = reader.url(&service_uri_name) {
        Some(StorageConnection::Identity { blob_service_uri: uri })
    } else if let Some(account) = reader.optional(&account_name_name) {
        // Checked before it becomes a host name: the managed identity's token is sent there.
        match is_storage_account_name(&account)
            .then(|| Url::parse(&format!("https://{account}.blob.core.windows.net")).ok())
            .flatten()
        {
            Some(uri) => Some(StorageConnection::Identity { blob_service_uri: uri }),
            None => {
                reader.problem(
                    &account_name_name,
                    format!(
                        "{account:?} is not a storage account name (3 to 24 lower-case letters and digits); \
                         for another cloud or a custom endpoint set {service_uri_name} instead"
                    ),
                );
                None
            }
        }
    } else {
        reader.problem(
            &connection_name,
            format!(
                "is required: a storage connection string (UseDevelopmentStorage=true for Azurite), \
                 or set {service_uri_name} (with {connection_name}__clientId) for identity-based access"
            ),
        );
        None
    };
    let container = |reader: &mut Reader<'_>, name: &str, default: &str| {
        let value = reader.optional(name).unwrap_or_else(|| default.to_owned());
        reader.parsed(name, Some(value), |v| {
            let valid = (3..=63).contains(&v.len())
                && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !v.starts_with('-')
                && !v.ends_with('-')
                && !v.contains("--");
            if valid {
                Ok(v.to_owned())
            } else {
                Err(format!("{v:?} is not a valid container name (3-63 lower-case letters, digits and single hyphens)"))
            }
        })
    };
    let log_container = container(reader, names::LOG_CONTAINER, "cert-auth");
    let state_container = container(reader, names::STATE_CONTAINER, "certsync-state");
    Some(StorageSettings {
        connection_name,
        connection: connection?,
        client_id,
        log_container: log_container?,
        state_container: state_container?,
    })
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&Environment)
    }

    pub fn load(source: &dyn SettingsSource) -> Result<Self, ConfigError> {
        let mut r = Reader::new(source);
        use names::*;
        let tenant_a = r.tenant(
            TENANT_A_ID,
            TENANT_A_CREDENTIAL,
            TENANT_A_CLIENT_ID,
            TENANT_A_CLIENT_SECRET,
            TENANT_A_CERTIFICATE_PATH,
            Side::TenantA,
        );
        let tenant_b = r.tenant(
            TENANT_B_ID,
            TENANT_B_CREDENTIAL,
            TENANT_B_CLIENT_ID,
            TENANT_B_CLIENT_SECRET,
            TENANT_B_CERTIFICATE_PATH,
            Side::TenantB,
        );

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

        let pairs_value = r.required(SYNC_PAIRS, "<Tenant A group id>-><Tenant B group id>, several separated by ';'");
        let pairs = r.parsed(SYNC_PAIRS, pairs_value, parse_pairs);
        let match_value = r.optional(MATCH_ON).unwrap_or_else(|| "upn-local-part".to_owned());
        let match_key = r.parsed(MATCH_ON, Some(match_value), |v| {
            MatchKey::parse(v).ok_or_else(|| format!("must be one of {}, not {v:?}", MatchKey::CHOICES))
        });
        let templates_value = r.required(
            CERTIFICATE_USER_ID_TEMPLATES,
            "the certificateUserIds values to write, as presets (runbook, principal-name, subject-cn, rfc822) or templates such as X509:<PN>{upn}, separated by ';' — see README \"Choosing the mapping\"",
        );
        let templates = r.parsed(CERTIFICATE_USER_ID_TEMPLATES, templates_value, |v| {
            let templates = v
                .split(';')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Template::parse(t).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            if templates.is_empty() {
                return Err("names no template".to_owned());
            }
            if templates.len() > crate::domain::MAX_VALUES_PER_USER {
                return Err(format!(
                    "names {} templates; a user holds at most {} values",
                    templates.len(),
                    crate::domain::MAX_VALUES_PER_USER
                ));
            }
            Ok(templates)
        });
        let certificates = read_certificate_settings(&mut r);
        let mut pairs = pairs;
        if let (Some(pairs), Some((sources, _))) = (pairs.as_mut(), certificates.as_ref()) {
            match assign_sources(pairs, sources) {
                Ok(()) => {}
                Err(problem) => r.problem(CERTIFICATE_SOURCE, problem),
            }
        }
        if let (Some(pairs), Some(templates)) = (pairs.as_ref(), templates.as_ref()) {
            let per_certificate = templates.iter().filter(|t| t.is_per_certificate()).map(|t| t.to_string());
            let per_certificate: Vec<String> = per_certificate.collect();
            let with_source = pairs.iter().any(|p| p.certificate_source.is_some());
            if !per_certificate.is_empty() && !with_source {
                r.problem(
                    CERTIFICATE_USER_ID_TEMPLATES,
                    format!(
                        "{} read issued certificates, but no pair has a CERTIFICATE_SOURCE (cloud-pki or intune-connector)",
                        per_certificate.join(", ")
                    ),
                );
            }
            if per_certificate.is_empty() && with_source {
                r.problem(
                    CERTIFICATE_SOURCE,
                    "is set, but no template reads a certificate: add issuer-serial or sha1-public-key to \
                     CERTIFICATE_USER_ID_TEMPLATES, or leave CERTIFICATE_SOURCE unset",
                );
            }
            if pairs.iter().any(|p| p.certificate_source == Some(CertificateSource::IntuneConnector))
                && certificates.as_ref().is_some_and(|(_, c)| c.connector_issuers.is_empty())
            {
                r.problem(
                    CERTIFICATE_ISSUER_CERTIFICATES,
                    "is required with the intune-connector source: a PEM file with the certificates of the CAs that \
                     issue through the connector (their names in Intune's records are display strings of \
                     undocumented order, so the encoded DN is taken from the CA certificate)",
                );
            }
        }
        let transitive_membership = r.bool(TRANSITIVE_MEMBERSHIP, false);
        let dry_run = r.bool(DRY_RUN, false);
        let allow_mass_removal = r.bool(ALLOW_MASS_REMOVAL, false);
        let users_value = r.optional(REMOVAL_THRESHOLD_USERS);
        let max_users = r
            .parsed(REMOVAL_THRESHOLD_USERS, users_value, |v| {
                v.parse::<usize>().map_err(|_| format!("must be a whole number, not {v:?}"))
            })
            .unwrap_or(500);
        let percent_value = r.optional(REMOVAL_THRESHOLD_PERCENT);
        let max_percent = r
            .parsed(REMOVAL_THRESHOLD_PERCENT, percent_value, |v| match v.parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
                _ => Err(format!("must be a percentage between 0 and 100, not {v:?}")),
            })
            .unwrap_or(20.0);

        let storage = read_storage(&mut r);
        let notification_value = r.optional(WEBHOOK_NOTIFICATION_URL);
        let notification_url = r.parsed(WEBHOOK_NOTIFICATION_URL, notification_value, NotificationUrl::parse);
        if notification_url.is_some() && r.optional(WEBHOOK_CLIENT_STATE).is_none() {
            r.problem(
                WEBHOOK_CLIENT_STATE,
                "is required when WEBHOOK_NOTIFICATION_URL is set: every subscription is created with it, and \
                 notifications without it are dropped",
            );
        }
        let webhook = WebhookSettings {
            client_state: r.optional(WEBHOOK_CLIENT_STATE).map(SecretString::from),
            previous_client_state: r.optional(WEBHOOK_PREVIOUS_CLIENT_STATE).map(SecretString::from),
            notification_url,
        };
        for name in [WEBHOOK_CLIENT_STATE, WEBHOOK_PREVIOUS_CLIENT_STATE] {
            // Graph limits clientState to 128 characters [subscription-post-subscriptions].
            if r.optional(name).is_some_and(|v| v.chars().count() > 128) {
                r.problem(name, "must be at most 128 characters (Graph's clientState limit)");
            }
        }
        if let Some(schedule) = r.optional(SYNC_SCHEDULE)
            && let Err(problem) = schedule::check_ncrontab(&schedule)
        {
            r.problem(SYNC_SCHEDULE, problem);
        }

        if !r.problems.is_empty() {
            return Err(ConfigError { problems: r.problems });
        }
        // Every `?` below is on a value whose absence added a problem above.
        let missing = || ConfigError { problems: vec![] };
        Ok(Settings {
            tenant_a: tenant_a.ok_or_else(missing)?,
            tenant_b: tenant_b.ok_or_else(missing)?,
            cloud,
            extra_ca_pem,
            sync: SyncSettings {
                pairs: pairs.ok_or_else(missing)?,
                match_key: match_key.ok_or_else(missing)?,
                templates: templates.ok_or_else(missing)?,
                transitive_membership,
                dry_run,
                removal_threshold: RemovalThreshold { max_users, max_percent },
                allow_mass_removal,
                certificates: certificates.map(|(_, c)| c).ok_or_else(missing)?,
            },
            storage: storage.ok_or_else(missing)?,
            webhook,
        })
    }
}

impl ServerSettings {
    pub fn load(source: &dyn SettingsSource) -> Result<Self, ConfigError> {
        let mut r = Reader::new(source);
        let value = r.required(
            names::FUNCTIONS_CUSTOMHANDLER_PORT,
            "the port the Functions host passes to a custom handler (set it yourself to run the server outside the host)",
        );
        let port = r.parsed(names::FUNCTIONS_CUSTOMHANDLER_PORT, value, |v| {
            v.parse::<u16>().map_err(|_| format!("must be a port number, not {v:?}"))
        });
        match port {
            Some(port) => Ok(Self { port }),
            None => Err(ConfigError { problems: r.problems }),
        }
    }
}

/// Text locally, JSON in Azure (App Service sets `WEBSITE_INSTANCE_ID`; `func start` does not), unless `LOG_FORMAT` says.
pub fn log_format(source: &dyn SettingsSource) -> LogFormat {
    match source.get(names::LOG_FORMAT).as_deref().map(str::trim) {
        Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        _ if source.get(names::WEBSITE_INSTANCE_ID).is_some() => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    pub(crate) fn minimal() -> HashMap<String, String> {
        settings(&[
            ("TENANT_A_ID", "11111111-1111-1111-1111-111111111111"),
            ("TENANT_B_ID", "22222222-2222-2222-2222-222222222222"),
            ("TENANT_B_CLIENT_ID", "33333333-3333-3333-3333-333333333333"),
            ("TENANT_B_CLIENT_SECRET", "s3cr3t-value"),
            ("SYNC_PAIRS", "aaaaaaaa-0000-0000-0000-000000000001->bbbbbbbb-0000-0000-0000-000000000001"),
            ("CERTIFICATE_USER_ID_TEMPLATES", "subject-cn"),
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
        ])
    }

    #[test]
    fn a_minimal_configuration_loads_with_documented_defaults() {
        let s = Settings::load(&minimal()).unwrap();
        assert!(matches!(s.tenant_a.credential, TenantCredential::ManagedIdentity { client_id: None }));
        assert_eq!(s.sync.pairs.len(), 1);
        assert_eq!(s.sync.match_key, MatchKey::parse("upn-local-part").unwrap());
        assert_eq!(s.storage.log_container, "cert-auth");
        assert_eq!(s.sync.removal_threshold, RemovalThreshold { max_users: 500, max_percent: 20.0 });
        assert!(!s.sync.dry_run);
    }

    #[test]
    fn every_problem_is_reported_together_with_its_setting_name() {
        let mut env = minimal();
        env.insert("TENANT_A_ID".into(), "not-a-tenant".into());
        env.remove("TENANT_B_CLIENT_SECRET");
        env.insert("MATCH_ON".into(), "displayName".into());
        env.insert("CERTIFICATE_USER_ID_TEMPLATES".into(), "x509:<PN>{upn}".into());
        env.insert("DRY_RUN".into(), "maybe".into());
        env.insert("SYNC_SCHEDULE".into(), "0 */4 * * *".into());
        let err = Settings::load(&env).unwrap_err();
        let named: Vec<_> = err.problems.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            named,
            [
                "TENANT_A_ID",
                "TENANT_B_CLIENT_SECRET",
                "MATCH_ON",
                "CERTIFICATE_USER_ID_TEMPLATES",
                "DRY_RUN",
                "SYNC_SCHEDULE"
            ],
            "{err}"
        );
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug_output() {
        let mut env = minimal();
        env.insert("AzureWebJobsStorage".into(), "AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;Bogus".into());
        let debug = format!("{:?}", Settings::load(&minimal()).unwrap());
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
        let err = Settings::load(&env).map(|_| ()).unwrap_err().to_string();
        assert!(!err.contains("c2VjcmV0LWtleQ=="), "{err}");
    }

    #[test]
    fn certificate_sources_are_checked_against_pairs_templates_and_readings() {
        let two_pairs = "aaaaaaaa-0000-0000-0000-000000000001->bbbbbbbb-0000-0000-0000-000000000001;\
                         aaaaaaaa-0000-0000-0000-000000000002->bbbbbbbb-0000-0000-0000-000000000002";
        let mut env = minimal();
        env.insert("SYNC_PAIRS".into(), two_pairs.into());
        env.insert("CERTIFICATE_USER_ID_TEMPLATES".into(), "subject-cn;issuer-serial".into());
        env.insert("CERTIFICATE_SOURCE".into(), "pair-2=cloud-pki".into());
        env.insert("CERTIFICATE_SERIAL_ORDER".into(), "as-issued".into());
        let s = Settings::load(&env).unwrap();
        let sources: Vec<_> = s.sync.pairs.iter().map(|p| p.certificate_source).collect();
        assert_eq!(sources, [None, Some(CertificateSource::CloudPki)]);
        assert_eq!(s.sync.certificates.serial_order, SerialOrder::AsIssued);

        let problem = |edits: &[(&str, &str)]| {
            let mut env = env.clone();
            for (name, value) in edits {
                env.insert(name.to_string(), value.to_string());
            }
            let err = Settings::load(&env).unwrap_err();
            (err.problems[0].name.clone(), err.to_string())
        };
        let (name, text) = problem(&[("CERTIFICATE_SOURCE", "pair-3=cloud-pki")]);
        assert_eq!(name, "CERTIFICATE_SOURCE");
        assert!(text.contains("pair-1 to pair-2"), "{text}");
        let (name, text) = problem(&[("CERTIFICATE_SOURCE", "none")]);
        assert_eq!(name, "CERTIFICATE_USER_ID_TEMPLATES");
        assert!(text.contains("no pair has a CERTIFICATE_SOURCE"), "{text}");
        let (name, _) = problem(&[("CERTIFICATE_USER_ID_TEMPLATES", "subject-cn")]);
        assert_eq!(name, "CERTIFICATE_SOURCE");
        let (name, text) = problem(&[("CERTIFICATE_SHA1_PUKEY", "public-key")]);
        assert_eq!(name, "CERTIFICATE_SHA1_PUKEY");
        assert!(text.contains("carry the thumbprint but not the public key"), "{text}");
        let (name, _) = problem(&[("CERTIFICATE_SOURCE", "intune-connector")]);
        assert_eq!(name, "CERTIFICATE_ISSUER_CERTIFICATES");
        let (name, text) = problem(&[("CERTIFICATE_SOURCE", "adcs")]);
        assert_eq!(name, "CERTIFICATE_SOURCE");
        assert!(text.contains("none, cloud-pki or intune-connector"), "{text}");
    }

    #[test]
    fn pairs_parse_several_groups_per_side() {
        let pairs = parse_pairs(
            "aaaaaaaa-0000-0000-0000-000000000001, aaaaaaaa-0000-0000-0000-000000000002 -> bbbbbbbb-0000-0000-0000-000000000001; \
             aaaaaaaa-0000-0000-0000-000000000003->bbbbbbbb-0000-0000-0000-000000000002",
        )
        .unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].source_groups.len(), 2);
        assert_eq!(pairs[1].name, "pair-2");
        for bad in ["", "aaaaaaaa-0000-0000-0000-000000000001", "x->y", "->bbbbbbbb-0000-0000-0000-000000000001"] {
            assert!(parse_pairs(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_notification_url_must_be_https_and_its_function_key_never_shows() {
        let mut env = minimal();
        env.insert(
            "WEBHOOK_NOTIFICATION_URL".into(),
            "https://app.azurewebsites.net/api/function-webhook?code=k3y".into(),
        );
        env.insert("WEBHOOK_CLIENT_STATE".into(), "state".into());
        let s = Settings::load(&env).unwrap();
        let url = s.webhook.notification_url.as_ref().unwrap();
        assert_eq!(url.expose(), "https://app.azurewebsites.net/api/function-webhook?code=k3y");
        let shown = format!("{url} {url:?} {s:?}");
        assert!(!shown.contains("k3y"), "{shown}");
        assert!(shown.contains("https://app.azurewebsites.net/api/function-webhook?[redacted]"), "{shown}");

        // Loopback http is for func start and the emulator; anything else must be https.
        assert!(NotificationUrl::parse("http://127.0.0.1:7071/api/function-webhook").is_ok());
        for bad in ["http://app.azurewebsites.net/api/x", "ftp://x/y", "/api/function-webhook", "https://x/y#f"] {
            env.insert("WEBHOOK_NOTIFICATION_URL".into(), bad.into());
            let err = Settings::load(&env).unwrap_err();
            assert_eq!(err.problems[0].name, "WEBHOOK_NOTIFICATION_URL", "{bad}: {err}");
        }

        // The URL needs the clientState the subscriptions are created with.
        env.insert("WEBHOOK_NOTIFICATION_URL".into(), "https://app.azurewebsites.net/api/function-webhook".into());
        env.remove("WEBHOOK_CLIENT_STATE");
        let err = Settings::load(&env).unwrap_err();
        assert_eq!(err.problems[0].name, "WEBHOOK_CLIENT_STATE", "{err}");
    }

    #[test]
    fn identity_based_storage_follows_the_functions_convention() {
        let mut env = minimal();
        env.remove("AzureWebJobsStorage");
        env.insert("STORAGE_CONNECTION".into(), "CertSyncStorage".into());
        env.insert("CertSyncStorage__blobServiceUri".into(), "https://acct.blob.core.windows.net".into());
        env.insert("CertSyncStorage__clientId".into(), "44444444-4444-4444-4444-444444444444".into());
        let s = Settings::load(&env).unwrap();
        assert!(matches!(s.storage.connection, StorageConnection::Identity { .. }));
        assert_eq!(s.storage.client_id.as_deref(), Some("44444444-4444-4444-4444-444444444444"));
    }

    #[test]
    fn an_account_name_becomes_the_blob_endpoint_only_when_it_is_one() {
        let with_account = |name: &str| {
            let mut env = minimal();
            env.remove("AzureWebJobsStorage");
            env.insert("AzureWebJobsStorage__accountName".into(), name.into());
            Settings::load(&env)
        };
        let s = with_account("certsync01").unwrap();
        let StorageConnection::Identity { blob_service_uri } = &s.storage.connection else {
            panic!("expected identity-based storage");
        };
        assert_eq!(blob_service_uri.as_str(), "https://certsync01.blob.core.windows.net/");
        // A name that is not an account name never becomes a host the identity's token is sent to.
        for name in ["ab", "CertSync", "cert-sync", "x@evil.example#", "evil.example/x", "a23456789012345678901234z"] {
            let err = with_account(name).unwrap_err();
            assert_eq!(err.problems[0].name, "AzureWebJobsStorage__accountName", "{name}: {err}");
            assert!(err.to_string().contains("3 to 24 lower-case letters and digits"), "{err}");
        }
    }

    #[test]
    fn a_schedule_the_timer_trigger_would_refuse_is_named_at_start() {
        let mut env = minimal();
        env.insert("SYNC_SCHEDULE".into(), "0 0 */4 * * 7".into());
        let err = Settings::load(&env).unwrap_err();
        assert_eq!(err.problems[0].name, "SYNC_SCHEDULE");
        assert!(err.to_string().contains("day-of-week field \"7\""), "{err}");
        env.insert("SYNC_SCHEDULE".into(), "0 15 2 * * Sun".into());
        Settings::load(&env).expect("a valid schedule");
    }
}
