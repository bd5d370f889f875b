//! [`BlobStore`] on Azure Blob Storage (or Azurite) through the official `azure_storage_blob` SDK.
//!
//! Authorization, by kind of setting:
//! - **Connection string** (`UseDevelopmentStorage=true`, or `AccountName`/`AccountKey` + endpoint): the SDK has no
//!   shared-key auth, so [`SasPolicy`] signs a *service SAS* for the container (`sr=c`, `sp=racwdl`, one hour,
//!   re-signed 15 minutes before expiry) and adds it to every request. A service SAS cannot create containers, so
//!   `connect` creates the container once through a separate client that carries an *account SAS* restricted to
//!   exactly that (`ss=b`, `srt=c`, `sp=c`). Both forms are accepted by Azure and by Azurite.
//! - **Identity** (`<prefix>__blobServiceUri`): a bearer token from the caller's `TokenCredential` (the SDK requires
//!   https). Creating the container needs the 'Storage Blob Data Contributor' role at account scope; with the role
//!   granted on the container only, creation is refused (403) and `connect` accepts the container if it exists.
//!
//! Conditional writes use `If-Match: <etag>` / `If-None-Match: *` ("Specifying conditional headers for Blob service
//! operations"); leases use "Lease Blob" (15–60 s or infinite; durations are clamped to 15–60 s).

use std::{fmt, io, sync::Arc, time::Duration};

use azure_core::{
    credentials::TokenCredential,
    error::ErrorKind,
    http::{ClientOptions, Etag, ExponentialRetryOptions, RequestContent, RetryOptions, Url},
};
use azure_storage_blob::{
    BlobContainerClient, BlobContainerClientOptions,
    models::{
        BlobClientAcquireLeaseOptions, BlobClientAcquireLeaseResultHeaders as _, BlobClientUploadOptions,
        BlobContainerClientListBlobsOptions, BlockBlobClientCommitBlockListOptions, BlockLookupList,
    },
};
use futures::TryStreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};

use super::{
    BackendError, BlobStore, ETag, Lease, StorageConnection, StorageError, StoredBlob, WriteBody,
    body::{BodyParts, PART_SIZE},
    connection::{parse_connection_string, parse_endpoint},
    lease_seconds,
    sas::{SasPolicy, SasScope, SharedKey},
};

/// Permissions of the container SAS: read, add, create, write, delete, list.
const CONTAINER_PERMISSIONS: &str = "racwdl";

/// Tuning of the SDK client.
#[derive(Debug, Clone)]
pub struct AzureBlobStoreOptions {
    /// Retries the SDK makes per request on throttling (429/503), server errors, timeouts and connection failures.
    pub max_retries: u32,
    /// First delay between those retries (exponential backoff, honouring `Retry-After`).
    pub initial_retry_delay: Duration,
}

impl Default for AzureBlobStoreOptions {
    fn default() -> Self {
        // Short on purpose: a state or log write that keeps failing falls back (stdout, next run) rather than
        // holding the invocation for minutes.
        AzureBlobStoreOptions { max_retries: 3, initial_retry_delay: Duration::from_millis(300) }
    }
}

/// How requests are authorized; only the kind is kept for `Debug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    SharedKeySas,
    Token,
}

/// A container in Azure Blob Storage or Azurite.
pub struct AzureBlobStore {
    client: BlobContainerClient,
    /// Container URL (never carries a SAS: the policy adds it per request).
    url: Url,
    container: String,
    auth: Auth,
    /// The account key as configured, removed verbatim from any error text.
    account_key: Option<SecretString>,
}

impl fmt::Debug for AzureBlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureBlobStore")
            .field("container_url", &self.url.as_str())
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl AzureBlobStore {
    /// Connect to `container`, creating it if it does not exist. `credential` is required for
    /// [`StorageConnection::Identity`] and ignored for connection strings.
    pub async fn connect(
        connection: &StorageConnection,
        credential: Option<Arc<dyn TokenCredential>>,
        container: &str,
    ) -> Result<Self, StorageError> {
        Self::connect_with_options(connection, credential, container, AzureBlobStoreOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit SDK retry settings.
    #[tracing::instrument(skip_all, fields(blob = %container))]
    pub async fn connect_with_options(
        connection: &StorageConnection,
        credential: Option<Arc<dyn TokenCredential>>,
        container: &str,
        options: AzureBlobStoreOptions,
    ) -> Result<Self, StorageError> {
        let (store, creator) = Self::build(connection, credential, container, &options)?;
        store.create_container(creator.as_ref().unwrap_or(&store.client)).await?;
        Ok(store)
    }

    /// The store, and the client that may create the container when that needs other rights than the data
    /// operations (connection strings: an account SAS). Sends no request.
    fn build(
        connection: &StorageConnection,
        credential: Option<Arc<dyn TokenCredential>>,
        container: &str,
        options: &AzureBlobStoreOptions,
    ) -> Result<(Self, Option<BlobContainerClient>), StorageError> {
        validate_container_name(container)?;
        match connection {
            StorageConnection::ConnectionString(secret) => {
                let parts = parse_connection_string(secret.expose_secret())?;
                let key = Arc::new(SharedKey::new(parts.account_name.clone(), parts.decoded_key()?));
                let https_only = parts.blob_endpoint.scheme() == "https";
                let url = container_url(&parts.blob_endpoint, container);
                let data_policy = SasPolicy::new(
                    key.clone(),
                    SasScope::Container { container: container.to_owned(), permissions: CONTAINER_PERMISSIONS },
                    https_only,
                );
                let create_policy =
                    SasPolicy::new(key, SasScope::Account { resource_types: "c", permissions: "c" }, https_only);
                let store = AzureBlobStore {
                    client: new_client(&url, None, Some(data_policy), options)?,
                    url: url.clone(),
                    container: container.to_owned(),
                    auth: Auth::SharedKeySas,
                    account_key: Some(parts.account_key),
                };
                let creator = new_client(&url, None, Some(create_policy), options)?;
                Ok((store, Some(creator)))
            }
            StorageConnection::Identity { blob_service_uri } => {
                let credential = credential.ok_or_else(|| {
                    StorageError::InvalidConnection(
                        "identity-based storage settings (__blobServiceUri) need a managed identity or other \
                         token credential, and none was configured"
                            .to_owned(),
                    )
                })?;
                let endpoint = parse_endpoint(blob_service_uri.as_str())
                    .map_err(|message| StorageError::InvalidConnection(format!("blobServiceUri: {message}")))?;
                if endpoint.scheme() != "https" {
                    return Err(StorageError::InvalidConnection(
                        "blobServiceUri must be an https URL (tokens are only sent over https)".to_owned(),
                    ));
                }
                let url = container_url(&endpoint, container);
                let store = AzureBlobStore {
                    client: new_client(&url, Some(credential), None, options)?,
                    url,
                    container: container.to_owned(),
                    auth: Auth::Token,
                    account_key: None,
                };
                Ok((store, None))
            }
        }
    }

    /// The container's URL (no credentials in it).
    pub fn container_url(&self) -> &Url {
        &self.url
    }

    async fn create_container(&self, creator: &BlobContainerClient) -> Result<(), StorageError> {
        match creator.create(None).await {
            Ok(_) => {
                tracing::info!(container = %self.container, "created blob container");
                Ok(())
            }
            Err(error) if code_of(&error) == Some("ContainerAlreadyExists") => Ok(()),
            Err(error) if self.auth == Auth::Token && status_of(&error) == Some(403) => {
                // The role may be granted on the container only: then it cannot be created, but may exist.
                match self.client.exists().await {
                    Ok(true) => Ok(()),
                    _ => Err(self.unavailable("create container", &self.container, &error)),
                }
            }
            Err(error) => Err(self.unavailable("create container", &self.container, &error)),
        }
    }

    fn unavailable(&self, operation: &'static str, blob: &str, error: &azure_core::Error) -> StorageError {
        let key = self.account_key.as_ref().map(|key| key.expose_secret()).unwrap_or("");
        StorageError::unavailable(operation, blob, BackendError::from_azure(error, &[key]))
    }

    async fn upload(
        &self,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: Option<Option<&ETag>>,
    ) -> Result<ETag, StorageError> {
        let mut options =
            BlobClientUploadOptions { blob_content_type: Some(content_type.to_owned()), ..Default::default() };
        match condition {
            Some(Some(etag)) => options.if_match = Some(Etag::from(etag.as_str())),
            Some(None) => options.if_none_match = Some(Etag::from("*")),
            None => {}
        }
        let operation = if condition.is_some() { "put_if" } else { "put" };
        match self.client.blob_client(name).upload(RequestContent::from(body), Some(options)).await {
            Ok(result) => Ok(ETag::new(result.etag.map(|etag| etag.to_string()).unwrap_or_default())),
            Err(error) => Err(match (status_of(&error), code_of(&error)) {
                (_, Some(code)) if code.starts_with("LeaseIdMissing") || code == "LeaseIdMismatchWithBlobOperation" => {
                    StorageError::LeaseHeld { blob: name.to_owned() }
                }
                (Some(412), _) | (Some(409), Some("BlobAlreadyExists")) | (Some(404), Some("BlobNotFound"))
                    if condition.is_some() =>
                {
                    StorageError::ConditionNotMet { blob: name.to_owned() }
                }
                _ => self.unavailable(operation, name, &error),
            }),
        }
    }

    /// Stages each part of a written body as a block and commits the list ("Put Block", "Put Block List"); a body
    /// of one part is a single Put Blob. Blocks staged before a failure are never committed: the blob keeps its
    /// previous content and Azure discards uncommitted blocks after a week.
    async fn upload_parts(&self, name: &str, content_type: &str, parts: &mut BodyParts) -> Result<(), StorageError> {
        let unfinished = |error: io::Error| StorageError::unavailable("put", name, BackendError::from_io(&error));
        let first = parts.next().await.map_err(unfinished)?.unwrap_or_default();
        let Some(second) = parts.next().await.map_err(unfinished)? else {
            return self.upload(name, first, content_type, None).await.map(drop);
        };
        let blocks = self.client.blob_client(name).block_blob_client();
        let mut ids: Vec<Vec<u8>> = Vec::new();
        let mut stage = async |body: Vec<u8>| {
            // Block ids of one blob must all have the same length ("Put Block").
            let id = format!("{:08}", ids.len()).into_bytes();
            let length = body.len() as u64;
            blocks
                .stage_block(&id, length, RequestContent::from(body), None)
                .await
                .map_err(|error| self.unavailable("put", name, &error))?;
            ids.push(id);
            Ok::<_, StorageError>(())
        };
        stage(first).await?;
        let mut part = Some(second);
        while let Some(body) = part {
            stage(body).await?;
            part = parts.next().await.map_err(unfinished)?;
        }
        let list = BlockLookupList { latest: Some(ids), ..Default::default() };
        let options = BlockBlobClientCommitBlockListOptions {
            blob_content_type: Some(content_type.to_owned()),
            ..Default::default()
        };
        let list = list.try_into().map_err(|error| self.unavailable("put", name, &error))?;
        blocks.commit_block_list(list, Some(options)).await.map_err(|error| self.unavailable("put", name, &error))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl BlobStore for AzureBlobStore {
    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn get(&self, name: &str) -> Result<Option<StoredBlob>, StorageError> {
        let result = match self.client.blob_client(name).download(None).await {
            Ok(result) => result,
            Err(error) if code_of(&error) == Some("BlobNotFound") => return Ok(None),
            Err(error) => return Err(self.unavailable("get", name, &error)),
        };
        let etag = result.properties.etag.as_ref().map(ToString::to_string).unwrap_or_default();
        let bytes = result.body.collect().await.map_err(|error| self.unavailable("get", name, &error))?;
        // `Vec::from` takes the buffer over when nothing else holds it, instead of copying (a ledger is MBs).
        Ok(Some(StoredBlob { bytes: Vec::from(bytes), etag: ETag::new(etag) }))
    }

    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn put_if(
        &self,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
        expected: Option<&ETag>,
    ) -> Result<ETag, StorageError> {
        self.upload(name, body, content_type, Some(expected)).await
    }

    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn put(&self, name: &str, body: Vec<u8>, content_type: &str) -> Result<(), StorageError> {
        self.upload(name, body, content_type, None).await.map(drop)
    }

    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn put_streamed(&self, name: &str, content_type: &str, write: WriteBody) -> Result<(), StorageError> {
        let mut parts = BodyParts::spawn(write, PART_SIZE);
        let uploaded = self.upload_parts(name, content_type, &mut parts).await;
        parts.finish().await;
        uploaded
    }

    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn acquire_lease(&self, name: &str, duration: Duration) -> Result<Option<Lease>, StorageError> {
        let blob = self.client.blob_client(name);
        // The blob may be deleted between creating and leasing it; try a few times.
        for _ in 0..3 {
            match self.upload(name, Vec::new(), "application/octet-stream", Some(None)).await {
                Ok(_) | Err(StorageError::ConditionNotMet { .. } | StorageError::LeaseHeld { .. }) => {}
                Err(error) => return Err(error),
            }
            let proposed = uuid::Uuid::new_v4().to_string();
            let options =
                BlobClientAcquireLeaseOptions { proposed_lease_id: Some(proposed.clone()), ..Default::default() };
            match blob.acquire_lease(lease_seconds(duration), Some(options)).await {
                Ok(response) => {
                    let id = response.lease_id().ok().flatten().unwrap_or(proposed);
                    return Ok(Some(Lease { blob: name.to_owned(), id }));
                }
                Err(error) if status_of(&error) == Some(409) => return Ok(None),
                Err(error) if code_of(&error) == Some("BlobNotFound") => continue,
                Err(error) => return Err(self.unavailable("acquire_lease", name, &error)),
            }
        }
        Err(StorageError::LeaseLost { blob: name.to_owned() })
    }

    #[tracing::instrument(skip_all, fields(blob = %lease.blob))]
    async fn renew_lease(&self, lease: &Lease) -> Result<(), StorageError> {
        match self.client.blob_client(&lease.blob).renew_lease(lease.id.clone(), None).await {
            Ok(_) => Ok(()),
            Err(error) if matches!(status_of(&error), Some(404 | 409 | 412)) => {
                Err(StorageError::LeaseLost { blob: lease.blob.clone() })
            }
            Err(error) => Err(self.unavailable("renew_lease", &lease.blob, &error)),
        }
    }

    #[tracing::instrument(skip_all, fields(blob = %lease.blob))]
    async fn release_lease(&self, lease: Lease) -> Result<(), StorageError> {
        match self.client.blob_client(&lease.blob).release_lease(lease.id.clone(), None).await {
            Ok(_) => Ok(()),
            Err(error) if matches!(status_of(&error), Some(404 | 409 | 412)) => {
                Err(StorageError::LeaseLost { blob: lease.blob })
            }
            Err(error) => Err(self.unavailable("release_lease", &lease.blob, &error)),
        }
    }

    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn delete(&self, name: &str) -> Result<bool, StorageError> {
        match self.client.blob_client(name).delete(None).await {
            Ok(_) => Ok(true),
            Err(error) if code_of(&error) == Some("BlobNotFound") => Ok(false),
            // "Delete Blob": a leased blob needs its lease id, else 412 LeaseIdMissing.
            Err(error) if status_of(&error) == Some(412) => Err(StorageError::LeaseHeld { blob: name.to_owned() }),
            Err(error) => Err(self.unavailable("delete", name, &error)),
        }
    }

    #[tracing::instrument(skip_all, fields(blob = %prefix))]
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            ..Default::default()
        };
        let mut pager =
            self.client.list_blobs(Some(options)).map_err(|error| self.unavailable("list", prefix, &error))?;
        let mut names = Vec::new();
        while let Some(item) = pager.try_next().await.map_err(|error| self.unavailable("list", prefix, &error))? {
            names.extend(item.name);
        }
        names.sort();
        Ok(names)
    }
}

fn new_client(
    url: &Url,
    credential: Option<Arc<dyn TokenCredential>>,
    sas: Option<SasPolicy>,
    options: &AzureBlobStoreOptions,
) -> Result<BlobContainerClient, StorageError> {
    let retry = ExponentialRetryOptions {
        max_retries: options.max_retries,
        initial_delay: azure_core::time::Duration::try_from(options.initial_retry_delay).unwrap_or_default(),
        ..Default::default()
    };
    let client_options = ClientOptions {
        per_try_policies: sas.into_iter().map(|policy| Arc::new(policy) as _).collect(),
        retry: RetryOptions::exponential(retry),
        ..Default::default()
    };
    BlobContainerClient::new(
        url.clone(),
        credential,
        Some(BlobContainerClientOptions { client_options, ..Default::default() }),
    )
    .map_err(|error| {
        StorageError::InvalidConnection(format!(
            "cannot build a blob client for {url}: {}",
            BackendError::from_azure(&error, &[])
        ))
    })
}

/// `<endpoint>/<container>`.
fn container_url(endpoint: &Url, container: &str) -> Url {
    let mut url = endpoint.clone();
    url.path_segments_mut().expect("http(s) URLs have a path").pop_if_empty().push(container);
    url
}

/// "Naming and referencing containers, blobs, and metadata": 3–63 characters, lowercase letters, digits and
/// single hyphens, starting and ending with a letter or digit.
fn validate_container_name(name: &str) -> Result<(), StorageError> {
    let valid = (3..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(StorageError::InvalidConnection(format!(
            "container name `{name}` is invalid: use 3-63 lowercase letters, digits and single hyphens"
        )))
    }
}

fn status_of(error: &azure_core::Error) -> Option<u16> {
    error.http_status().map(u16::from)
}

fn code_of(error: &azure_core::Error) -> Option<&str> {
    match error.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A `tracing` writer that keeps everything logged.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Every `sig=` in `text` is followed by the redaction marker.
    fn signatures_redacted(text: &str) -> bool {
        text.match_indices("sig=").all(|(at, _)| text[at + 4..].starts_with(super::super::error::REDACTED))
    }

    #[tokio::test]
    async fn the_key_and_the_sas_signature_never_reach_debug_errors_or_logs() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);

        // A distinctive key, and an endpoint where nothing listens: every request fails after the SAS is applied.
        let key = "U2VjcmV0S2V5VGhhdE11c3ROZXZlckxlYWs=";
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let connection = StorageConnection::ConnectionString(SecretString::from(format!(
            "AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=http://127.0.0.1:{closed_port}/devstoreaccount1"
        )));
        let options = AzureBlobStoreOptions { max_retries: 1, initial_retry_delay: Duration::from_millis(1) };
        let (store, _) = AzureBlobStore::build(&connection, None, "state", &options).unwrap();
        let get = store.get("state.json").await.unwrap_err();
        let put = store.put("a/b.json", b"{}".to_vec(), "application/json").await.unwrap_err();
        let connect = AzureBlobStore::connect_with_options(&connection, None, "state", options).await.unwrap_err();

        let mut shown = format!("{store:?}\n{connection:?}\n");
        for error in [&get, &put, &connect] {
            assert!(matches!(error, StorageError::Unavailable { .. }), "{error:?}");
            let source = std::error::Error::source(error).expect("Unavailable has a source");
            shown.push_str(&format!("{error}\n{error:?}\n{source}\n"));
        }
        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("devstoreaccount1/state"), "the requests were logged: {logs}");
        for text in [&shown, &logs] {
            assert!(!text.contains(key), "the account key leaked:\n{text}");
            assert!(signatures_redacted(text), "a SAS signature leaked:\n{text}");
        }
        assert!(shown.contains("connection failed"), "{shown}");
    }

    #[test]
    fn container_url_appends_the_container_to_path_style_and_host_style_endpoints() {
        let cases = [
            ("http://127.0.0.1:10000/devstoreaccount1", "http://127.0.0.1:10000/devstoreaccount1/state"),
            ("https://acct.blob.core.windows.net", "https://acct.blob.core.windows.net/state"),
        ];
        for (endpoint, expected) in cases {
            let endpoint = parse_endpoint(endpoint).unwrap();
            assert_eq!(container_url(&endpoint, "state").as_str(), expected);
        }
    }

    #[test]
    fn container_names_follow_the_azure_rules() {
        for valid in ["abc", "cert-sync", "a1b2c3"] {
            assert!(validate_container_name(valid).is_ok(), "{valid}");
        }
        for invalid in ["ab", "Upper", "-abc", "abc-", "a--b", "under_score", &"x".repeat(64)] {
            assert!(validate_container_name(invalid).is_err(), "{invalid}");
        }
    }
}
