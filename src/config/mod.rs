//! Every setting, read once at start-up from environment variables: what `local.settings.json` `Values` become under
//! `func start`, and what app settings become in Azure. Parsing collects **every** problem before failing, so an
//! administrator fixes a deployment in one round instead of one setting per restart.
//!
//! The names, meanings and defaults are listed in the README ("Settings"); `local.settings.sample.json` shows them.
//!
//! One module per area, each with its settings and the function that reads them: `tenants` (who the tenants are,
//! how Graph is reached), `sync` (what the core needs: the `pairs`, match key and templates, the `certificates`
//! settings, the removal threshold), `storage` and `webhook`; `schedule` is only checked. Here: the whole
//! [`Settings`], the [`names`] of the settings, and the reader every area reads through, which records a problem
//! and reads on instead of stopping at the first.

mod certificates;
mod pairs;
mod schedule;
mod storage;
mod sync;
mod tenants;
mod webhook;

use std::collections::HashMap;
use std::fmt;

use url::Url;

pub use certificates::CertificateSettings;
pub use pairs::{PairSettings, parse_pairs};
pub use storage::StorageSettings;
pub use sync::SyncSettings;
pub use tenants::TenantSettings;
pub use webhook::{NotificationUrl, WebhookSettings};

use crate::domain::Side;
use crate::graph::CloudEndpoints;

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
    /// The write budget the Graph clients pace to (`GRAPH_WRITE_BUDGET`, Graph's documented 3,000 per 150 s).
    pub graph_write_budget: crate::graph::Budget,
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
    pub const GRAPH_WRITE_BUDGET: &str = "GRAPH_WRITE_BUDGET";
    pub const SYNC_SOFT_DEADLINE_MINUTES: &str = "SYNC_SOFT_DEADLINE_MINUTES";
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
            match url.scheme() {
                "https" => Ok(url),
                // Plain http carries the bearer token in clear: only to this machine (an emulator, Azurite).
                "http" if crate::graph::is_loopback(&url) => Ok(url),
                "http" => Err(format!(
                    "must be an https URL: http would send the access token in clear (http is allowed only to \
                     localhost or a loopback address), not {v:?}"
                )),
                _ => Err(format!("must be an https URL, not {v:?}")),
            }
        })
    }
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

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&Environment)
    }

    /// Reads every area in turn, so problems are reported in this order: tenants, cloud, sync, storage, webhook,
    /// schedule.
    pub fn load(source: &dyn SettingsSource) -> Result<Self, ConfigError> {
        let mut r = Reader::new(source);
        let tenant_a = tenants::read_tenant(&mut r, Side::TenantA);
        let tenant_b = tenants::read_tenant(&mut r, Side::TenantB);
        let (cloud, extra_ca_pem) = tenants::read_cloud(&mut r);
        let graph_write_budget = tenants::read_write_budget(&mut r);
        let sync = sync::read(&mut r);
        let storage = storage::read(&mut r);
        let webhook = webhook::read(&mut r);
        if let Some(schedule) = r.optional(names::SYNC_SCHEDULE)
            && let Err(problem) = schedule::check_ncrontab(&schedule)
        {
            r.problem(names::SYNC_SCHEDULE, problem);
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
            graph_write_budget,
            sync: sync.ok_or_else(missing)?,
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
    use crate::domain::{MatchKey, RemovalThreshold};
    use crate::graph::TenantCredential;

    fn settings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    pub(super) fn minimal() -> HashMap<String, String> {
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
