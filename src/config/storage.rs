//! Where the audit logs and the state (ledger, lease, delta positions, subscription records) live: the storage
//! connection, read the Functions way (`AzureWebJobsStorage` or `STORAGE_CONNECTION`), and `LOG_CONTAINER`,
//! `STATE_CONTAINER`.

use secrecy::SecretString;
use url::Url;

use super::{Reader, names};
use crate::storage::StorageConnection;

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

/// Storage account names are 3 to 24 characters, lower-case letters and digits only ("Storage account name", Azure
/// resource naming rules).
fn is_storage_account_name(name: &str) -> bool {
    (3..=24).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The storage connection named `name`, read the Functions way: `<name>` is a connection string, or
/// `<name>__blobServiceUri` (identity-based, with `<name>__clientId` for a user-assigned identity).
pub(super) fn read(reader: &mut Reader<'_>) -> Option<StorageSettings> {
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

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::config::tests::minimal;
    use crate::storage::StorageConnection;

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
}
