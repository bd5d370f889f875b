//! JSON state documents on any [`BlobStore`]: read with their ETag, update by read-modify-write guarded by that
//! ETag (retried when another writer got there first). A document that does not parse is reported as
//! [`StorageError::Corrupt`] and left alone: replacing it would silently drop state an administrator may need.

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use super::{BlobStore, ETag, StorageError};

/// The document and its ETag, or `None` if the blob does not exist.
#[tracing::instrument(skip_all, fields(blob = %name))]
pub async fn read_json<T: DeserializeOwned>(
    store: &dyn BlobStore,
    name: &str,
) -> Result<Option<(T, ETag)>, StorageError> {
    let Some(blob) = store.get(name).await? else {
        return Ok(None);
    };
    let value = serde_json::from_slice(&blob.bytes).map_err(|error| StorageError::Corrupt {
        blob: name.to_owned(),
        reason: format!("not valid JSON for this document: {error}"),
    })?;
    Ok(Some((value, blob.etag)))
}

/// Read-modify-write: `f` gets the current document (None if missing) and returns the new one, which is written only
/// if nobody changed the blob in between; on a conflict the whole cycle runs again, up to `max_attempts` times
/// (then [`StorageError::ConditionNotMet`]). `f` may therefore run more than once. [`StorageError::Corrupt`] and
/// every other error stop at once. Returns the document as written.
#[tracing::instrument(skip_all, fields(blob = %name))]
pub async fn update_json<T, F>(
    store: &dyn BlobStore,
    name: &str,
    max_attempts: u32,
    mut f: F,
) -> Result<T, StorageError>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> T,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = read_json::<T>(store, name).await?;
        let (value, etag) = match current {
            Some((value, etag)) => (Some(value), Some(etag)),
            None => (None, None),
        };
        let updated = f(value);
        let body = serde_json::to_vec(&updated).map_err(|error| StorageError::Corrupt {
            blob: name.to_owned(),
            reason: format!("the new document cannot be serialized: {error}"),
        })?;
        match store.put_if(name, body, "application/json", etag.as_ref()).await {
            Ok(_) => return Ok(updated),
            Err(StorageError::ConditionNotMet { .. }) if attempt < max_attempts => {
                tracing::debug!(attempt, "blob changed concurrently; retrying the update");
                tokio::time::sleep(conflict_backoff(attempt)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A short random pause before retrying a conflicting update, so that two writers stop colliding in lockstep.
fn conflict_backoff(attempt: u32) -> Duration {
    let ceiling_ms = 5 * u64::from(attempt.min(10));
    Duration::from_millis(rand::random_range(0..=ceiling_ms))
}
