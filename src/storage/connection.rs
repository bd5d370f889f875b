//! How the app reaches its storage account: a connection string (Azurite, or an account key) or identity-based
//! settings (`<prefix>__blobServiceUri` + a `TokenCredential`), following the Functions convention described in
//! "Azure Functions: connections" (identity-based connections) and "Configure Azure Storage connection strings".

use std::fmt;

use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

use super::StorageError;

/// The account Azurite serves (path-style, `http://127.0.0.1:10000/devstoreaccount1`).
pub const DEVELOPMENT_STORAGE_ACCOUNT: &str = "devstoreaccount1";

/// Azurite's well-known account key. It is public (published in the Azurite README) and only valid against the
/// emulator, so it is not a secret; it is still handled as one so no code path treats keys differently.
pub const DEVELOPMENT_STORAGE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The blob endpoint `UseDevelopmentStorage=true` stands for.
pub const DEVELOPMENT_STORAGE_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// Where the app's blobs live, as the configuration gives it.
#[derive(Clone)]
pub enum StorageConnection {
    /// A storage connection string: `UseDevelopmentStorage=true`, or `AccountName=…;AccountKey=…` with `BlobEndpoint`
    /// or `DefaultEndpointsProtocol` + `EndpointSuffix`.
    ConnectionString(SecretString),
    /// Identity-based settings: the blob service URI (`https://<account>.blob.core.windows.net`); the token comes
    /// from the `TokenCredential` handed to [`AzureBlobStore::connect`](super::AzureBlobStore::connect).
    Identity { blob_service_uri: Url },
}

impl fmt::Debug for StorageConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageConnection::ConnectionString(_) => f.write_str("ConnectionString([REDACTED])"),
            StorageConnection::Identity { blob_service_uri } => {
                f.debug_struct("Identity").field("blob_service_uri", &blob_service_uri.as_str()).finish()
            }
        }
    }
}

/// The pieces of a connection string that the store needs.
pub struct ConnectionStringParts {
    /// Storage account name, e.g. `devstoreaccount1`.
    pub account_name: String,
    /// The account key (base64, as in the portal).
    pub account_key: SecretString,
    /// Blob service endpoint without trailing slash, e.g. `https://acct.blob.core.windows.net` or
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub blob_endpoint: Url,
}

impl fmt::Debug for ConnectionStringParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionStringParts")
            .field("account_name", &self.account_name)
            .field("account_key", &"[REDACTED]")
            .field("blob_endpoint", &self.blob_endpoint.as_str())
            .finish()
    }
}

impl ConnectionStringParts {
    /// The decoded account key bytes (the HMAC key for SAS signing).
    pub(crate) fn decoded_key(&self) -> Result<Vec<u8>, StorageError> {
        decode_key(self.account_key.expose_secret())
    }
}

fn decode_key(key: &str) -> Result<Vec<u8>, StorageError> {
    base64::engine::general_purpose::STANDARD.decode(key.trim()).map_err(|_| {
        StorageError::InvalidConnection(
            "the connection string's AccountKey is not valid base64; copy the key again from the storage \
                 account's 'Access keys' page"
                .to_owned(),
        )
    })
}

/// Parse a storage connection string. Keys are matched case-insensitively; unknown keys (QueueEndpoint, …) are
/// ignored. Error messages never repeat a value, since any of them may be the key.
pub fn parse_connection_string(connection_string: &str) -> Result<ConnectionStringParts, StorageError> {
    let invalid = |message: &str| StorageError::InvalidConnection(format!("connection string: {message}"));

    let mut account_name = None;
    let mut account_key = None;
    let mut blob_endpoint = None;
    let mut protocol = None;
    let mut suffix = None;
    let mut development = false;

    for (index, segment) in connection_string.split(';').enumerate() {
        let segment = segment.trim();
        if segment.is_empty() {
            continue;
        }
        let Some((key, value)) = segment.split_once('=') else {
            return Err(invalid(&format!(
                "part {} is not of the form Key=Value (parts are separated by ';')",
                index + 1
            )));
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "usedevelopmentstorage" => development = value.eq_ignore_ascii_case("true"),
            "developmentstorageproxyuri" => {
                return Err(invalid("DevelopmentStorageProxyUri is not supported"));
            }
            "accountname" => account_name = Some(value.to_owned()),
            "accountkey" => account_key = Some(value.to_owned()),
            "blobendpoint" => blob_endpoint = Some(value.to_owned()),
            "defaultendpointsprotocol" => protocol = Some(value.to_ascii_lowercase()),
            "endpointsuffix" => suffix = Some(value.to_owned()),
            "sharedaccesssignature" => {
                return Err(invalid(
                    "SAS connection strings are not supported; use one with AccountName and AccountKey, or \
                     identity-based settings (<prefix>__blobServiceUri)",
                ));
            }
            _ => {}
        }
    }

    if development {
        return Ok(ConnectionStringParts {
            account_name: DEVELOPMENT_STORAGE_ACCOUNT.to_owned(),
            account_key: SecretString::from(DEVELOPMENT_STORAGE_KEY),
            blob_endpoint: Url::parse(DEVELOPMENT_STORAGE_BLOB_ENDPOINT).expect("constant URL is valid"),
        });
    }

    let account_name = account_name.filter(|name| !name.is_empty()).ok_or_else(|| invalid("AccountName is missing"))?;
    if !account_name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid("AccountName may only contain letters and digits"));
    }
    let account_key = account_key.filter(|key| !key.is_empty()).ok_or_else(|| invalid("AccountKey is missing"))?;
    decode_key(&account_key)?;

    let blob_endpoint = match blob_endpoint {
        Some(endpoint) => parse_endpoint(&endpoint).map_err(|message| invalid(&message))?,
        None => {
            let protocol = protocol.unwrap_or_else(|| "https".to_owned());
            if protocol != "https" && protocol != "http" {
                return Err(invalid("DefaultEndpointsProtocol must be https or http"));
            }
            let suffix = suffix.unwrap_or_else(|| "core.windows.net".to_owned());
            parse_endpoint(&format!("{protocol}://{account_name}.blob.{suffix}"))
                .map_err(|message| invalid(&message))?
        }
    };

    Ok(ConnectionStringParts { account_name, account_key: SecretString::from(account_key), blob_endpoint })
}

/// Validate a blob endpoint and normalise it to "no trailing slash, no query".
pub(crate) fn parse_endpoint(endpoint: &str) -> Result<Url, String> {
    let mut url =
        Url::parse(endpoint.trim()).map_err(|error| format!("the blob endpoint is not a valid URL ({error})"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err("the blob endpoint must be an http or https URL".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the blob endpoint has no host".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the blob endpoint must not carry a query (a SAS) or fragment".to_owned());
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1ieXRlcw==";

    #[test]
    fn development_storage_is_azurite_with_the_well_known_key() {
        let parts = parse_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(parts.account_name, "devstoreaccount1");
        assert_eq!(parts.blob_endpoint.as_str(), "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(parts.account_key.expose_secret(), DEVELOPMENT_STORAGE_KEY);
    }

    #[test]
    fn explicit_blob_endpoint_is_kept_without_trailing_slash() {
        let parts = parse_connection_string(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};\
             BlobEndpoint=http://127.0.0.1:41234/devstoreaccount1/;QueueEndpoint=http://127.0.0.1:1/x;"
        ))
        .unwrap();
        assert_eq!(parts.blob_endpoint.as_str(), "http://127.0.0.1:41234/devstoreaccount1");
        assert_eq!(parts.account_key.expose_secret(), KEY);
        assert_eq!(parts.decoded_key().unwrap(), b"secret-key-bytes");
    }

    #[test]
    fn endpoint_is_built_from_protocol_and_suffix() {
        let cases = [
            (format!("AccountName=acct;AccountKey={KEY}"), "https://acct.blob.core.windows.net/"),
            (
                format!(
                    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn"
                ),
                "https://acct.blob.core.chinacloudapi.cn/",
            ),
            (
                format!("accountname=acct;accountkey={KEY};defaultendpointsprotocol=HTTP"),
                "http://acct.blob.core.windows.net/",
            ),
        ];
        for (input, expected) in cases {
            let parts = parse_connection_string(&input).unwrap();
            assert_eq!(parts.blob_endpoint.as_str(), expected, "endpoint of {input}");
        }
    }

    #[test]
    fn invalid_connection_strings_are_rejected_without_echoing_values() {
        let cases = [
            ("AccountName=acct", "AccountKey is missing"),
            (&format!("AccountKey={KEY}") as &str, "AccountName is missing"),
            ("AccountName=acct;AccountKey=not base64 !!", "not valid base64"),
            ("AccountName=acct;AccountKey", "part 2 is not of the form"),
            ("BlobEndpoint=https://x.blob.core.windows.net;SharedAccessSignature=sv=1&sig=abc", "not supported"),
            (&format!("AccountName=acct;AccountKey={KEY};BlobEndpoint=ftp://x"), "http or https"),
        ];
        for (input, expected) in cases {
            let error = parse_connection_string(input).unwrap_err();
            let text = error.to_string();
            assert!(matches!(error, StorageError::InvalidConnection(_)), "{input}: {error:?}");
            assert!(text.contains(expected), "{input}: {text}");
            assert!(!text.contains(KEY) && !text.contains("not base64 !!") && !text.contains("abc"), "{text}");
        }
    }

    #[test]
    fn debug_output_hides_the_key() {
        let parts = parse_connection_string(&format!("AccountName=acct;AccountKey={KEY}")).unwrap();
        let connection =
            StorageConnection::ConnectionString(SecretString::from(format!("AccountName=acct;AccountKey={KEY}")));
        for text in [format!("{parts:?}"), format!("{connection:?}")] {
            assert!(!text.contains(KEY), "{text}");
        }
    }
}
