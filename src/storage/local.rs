//! [`BlobStore`] in a local directory: for the demo and for administrators who run the CLI without Azure.
//!
//! It keeps the contract of the Azure store, not just its shape:
//! - blob `a/b/c.json` is the file `<dir>/a/b/c.json`, so logs and state can be read with ordinary tools;
//! - the ETag is a SHA-256 of the content (`"<hex>"`);
//! - every write goes to a temporary file that is renamed into place, so readers see the old or the new content;
//! - conditional writes and leases are checked under a lock (a task mutex within the process, plus a lock file
//!   created with `create_new` across processes);
//! - leases are files `<dir>/.certsync/leases/<sha256 of name>.json` holding the lease id and its expiry; a leased
//!   blob cannot be written ([`StorageError::LeaseHeld`]), as in Azure. Durations are clamped to 15–60 s like Azure.
//!
//! Differences from Azure: the content type is not kept, and a blob cannot be both `a` and the "directory" of `a/b`.
//! Names must be relative, `/`-separated, without empty, `.` or `..` segments and not start with `.certsync/`.

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{BackendError, BlobStore, ETag, Lease, StorageError, StoredBlob, WriteBody, lease_seconds};

/// The store's own files live here, out of the blob namespace.
const INTERNAL_DIR: &str = ".certsync";
/// A lock file older than this is left over from a crashed process (the critical sections take milliseconds).
const STALE_LOCK: Duration = Duration::from_secs(10);
/// Give up waiting for the lock after this long.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// Buffer between a streamed body's writer and its file (serializers make many small writes).
const WRITE_BUFFER: usize = 64 * 1024;

/// A directory used as a blob container.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
    /// Serializes this process's critical sections so tasks wait on a mutex rather than spin on the lock file.
    guard: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LeaseRecord {
    blob: String,
    id: String,
    duration_ms: u128,
    expires_unix_ms: u128,
}

impl LeaseRecord {
    fn is_active(&self, now_ms: u128) -> bool {
        self.expires_unix_ms > now_ms
    }
}

impl LocalDirStore {
    /// A store rooted at `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        LocalDirStore { root: dir, guard: Arc::new(tokio::sync::Mutex::new(())) }
    }

    /// The directory the blobs live in.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Run `work` on the blocking pool while holding both locks.
    async fn locked<T, W>(&self, operation: &'static str, name: &str, work: W) -> Result<T, StorageError>
    where
        T: Send + 'static,
        W: FnOnce(&Paths) -> Result<T, StorageError> + Send + 'static,
    {
        let paths = Paths::new(&self.root, name).map_err(|error| unavailable(operation, name, &error))?;
        let _in_process = self.guard.lock().await;
        let blob = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let _across_processes = DirLock::acquire(&paths.internal.join("lock"))
                .map_err(|error| unavailable(operation, &blob, &error))?;
            work(&paths)
        })
        .await
        .map_err(|join| unavailable(operation, name, &io::Error::other(join.to_string())))?
    }
}

/// The file paths one operation touches.
struct Paths {
    blob: PathBuf,
    internal: PathBuf,
    lease: PathBuf,
}

impl Paths {
    fn new(root: &Path, name: &str) -> io::Result<Self> {
        let internal = root.join(INTERNAL_DIR);
        let lease = internal.join("leases").join(format!("{}.json", hex(&Sha256::digest(name.as_bytes()))));
        Ok(Paths { blob: blob_path(root, name)?, internal, lease })
    }
}

/// Map a blob name to its file, refusing names that could escape the directory or hit the store's own files.
fn blob_path(root: &Path, name: &str) -> io::Result<PathBuf> {
    let segments: Vec<&str> = name.split('/').collect();
    let valid = !name.is_empty()
        && !name.contains(['\\', '\0'])
        && segments.iter().all(|s| !s.is_empty() && *s != "." && *s != "..")
        && segments[0] != INTERNAL_DIR;
    if !valid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "blob name must be relative and '/'-separated, without empty, '.' or '..' segments, and not under .certsync/",
        ));
    }
    Ok(segments.iter().fold(root.to_path_buf(), |path, segment| path.join(segment)))
}

fn unavailable(operation: &'static str, name: &str, error: &io::Error) -> StorageError {
    StorageError::unavailable(operation, name, BackendError::from_io(error))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn etag_of(bytes: &[u8]) -> ETag {
    ETag::new(format!("\"{}\"", hex(&Sha256::digest(bytes))))
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// The file's content, or None if there is no such blob (a directory is not a blob).
fn read_blob(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(None),
        Err(_) if path.is_dir() => Ok(None),
        Err(error) => Err(error),
    }
}

/// Write through a temporary file renamed into place.
fn write_atomically(internal: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let written = write_temporary(internal, |file| file.write_all(bytes))?;
    move_into_place(&written, target)
}

/// A new file under `.certsync/tmp` filled by `fill` and synced to disk; removed again if anything fails.
fn write_temporary(internal: &Path, fill: impl FnOnce(&mut fs::File) -> io::Result<()>) -> io::Result<PathBuf> {
    let tmp_dir = internal.join("tmp");
    fs::create_dir_all(&tmp_dir)?;
    let tmp = tmp_dir.join(uuid::Uuid::new_v4().to_string());
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        fill(&mut file)?;
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(error) => {
            let _ = fs::remove_file(&tmp);
            Err(error)
        }
    }
}

/// Renames a written temporary file to `target`, so readers see the old or the new content, never a mix.
fn move_into_place(written: &Path, target: &Path) -> io::Result<()> {
    let result = target.parent().map_or(Ok(()), fs::create_dir_all).and_then(|()| fs::rename(written, target));
    if result.is_err() {
        let _ = fs::remove_file(written);
    }
    result
}

fn read_lease(path: &Path) -> io::Result<Option<LeaseRecord>> {
    match fs::read(path) {
        // An unreadable record is treated as no lease: it can only come from a crash mid-write of a lease file,
        // and write_atomically makes even that unlikely.
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn write_lease(paths: &Paths, record: &LeaseRecord) -> io::Result<()> {
    let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
    write_atomically(&paths.internal, &paths.lease, &bytes)
}

/// Is the blob leased by someone right now?
fn leased(paths: &Paths) -> io::Result<bool> {
    Ok(read_lease(&paths.lease)?.is_some_and(|record| record.is_active(now_ms())))
}

/// A lock file held for the duration of a critical section.
struct DirLock {
    path: PathBuf,
}

impl DirLock {
    fn acquire(path: &Path) -> io::Result<DirLock> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            match fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    let _ = write!(file, "{}", std::process::id());
                    return Ok(DirLock { path: path.to_path_buf() });
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    // TODO-hardening: two processes breaking the same stale lock at once could both proceed.
                    let stale = fs::metadata(path)
                        .and_then(|meta| meta.modified())
                        .is_ok_and(|modified| modified.elapsed().unwrap_or_default() > STALE_LOCK);
                    if stale {
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    if Instant::now() > deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("timed out waiting for the store lock {}", path.display()),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(error) => return Err(error),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[async_trait::async_trait]
impl BlobStore for LocalDirStore {
    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn get(&self, name: &str) -> Result<Option<StoredBlob>, StorageError> {
        let path = blob_path(&self.root, name).map_err(|error| unavailable("get", name, &error))?;
        let bytes = tokio::task::spawn_blocking(move || read_blob(&path))
            .await
            .map_err(|join| unavailable("get", name, &io::Error::other(join.to_string())))?
            .map_err(|error| unavailable("get", name, &error))?;
        Ok(bytes.map(|bytes| StoredBlob { etag: etag_of(&bytes), bytes }))
    }

    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn put_if(
        &self,
        name: &str,
        body: Vec<u8>,
        _content_type: &str,
        expected: Option<&ETag>,
    ) -> Result<ETag, StorageError> {
        let expected = expected.cloned();
        let blob = name.to_owned();
        self.locked("put_if", name, move |paths| {
            let io = |error: io::Error| unavailable("put_if", &blob, &error);
            if leased(paths).map_err(io)? {
                return Err(StorageError::LeaseHeld { blob });
            }
            let current = read_blob(&paths.blob).map_err(io)?.map(|bytes| etag_of(&bytes));
            if current != expected {
                return Err(StorageError::ConditionNotMet { blob });
            }
            write_atomically(&paths.internal, &paths.blob, &body).map_err(io)?;
            Ok(etag_of(&body))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn put(&self, name: &str, body: Vec<u8>, _content_type: &str) -> Result<(), StorageError> {
        let blob = name.to_owned();
        self.locked("put", name, move |paths| {
            let io = |error: io::Error| unavailable("put", &blob, &error);
            if leased(paths).map_err(io)? {
                return Err(StorageError::LeaseHeld { blob });
            }
            write_atomically(&paths.internal, &paths.blob, &body).map_err(io)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn put_streamed(&self, name: &str, _content_type: &str, write: WriteBody) -> Result<(), StorageError> {
        Paths::new(&self.root, name).map_err(|error| unavailable("put", name, &error))?;
        // Written before taking the lock: a large body takes a while, the lock is only needed for the lease check
        // and the rename (a lock held for seconds would look stale to other processes).
        let internal = self.root.join(INTERNAL_DIR);
        let written = tokio::task::spawn_blocking(move || {
            write_temporary(&internal, |file| {
                let mut out = io::BufWriter::with_capacity(WRITE_BUFFER, file);
                write(&mut out)?;
                out.flush()
            })
        })
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)))
        .map_err(|error| unavailable("put", name, &error))?;
        let blob = name.to_owned();
        let tmp = written.clone();
        let moved = self
            .locked("put", name, move |paths| {
                if leased(paths).map_err(|error| unavailable("put", &blob, &error))? {
                    return Err(StorageError::LeaseHeld { blob });
                }
                move_into_place(&written, &paths.blob).map_err(|error| unavailable("put", &blob, &error))
            })
            .await;
        if moved.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        moved
    }

    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn acquire_lease(&self, name: &str, duration: Duration) -> Result<Option<Lease>, StorageError> {
        let blob = name.to_owned();
        let seconds = u128::try_from(lease_seconds(duration)).unwrap_or(60);
        self.locked("acquire_lease", name, move |paths| {
            let io = |error: io::Error| unavailable("acquire_lease", &blob, &error);
            if leased(paths).map_err(io)? {
                return Ok(None);
            }
            if read_blob(&paths.blob).map_err(io)?.is_none() {
                write_atomically(&paths.internal, &paths.blob, &[]).map_err(io)?;
            }
            let record = LeaseRecord {
                blob: blob.clone(),
                id: uuid::Uuid::new_v4().to_string(),
                duration_ms: seconds * 1000,
                expires_unix_ms: now_ms() + seconds * 1000,
            };
            write_lease(paths, &record).map_err(io)?;
            Ok(Some(Lease { blob, id: record.id }))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(blob = %lease.blob))]
    async fn renew_lease(&self, lease: &Lease) -> Result<(), StorageError> {
        let lease = lease.clone();
        self.locked("renew_lease", &lease.blob.clone(), move |paths| {
            let io = |error: io::Error| unavailable("renew_lease", &lease.blob, &error);
            match read_lease(&paths.lease).map_err(io)? {
                // Like Azure, an expired lease can be renewed as long as nobody took it in the meantime.
                Some(mut record) if record.id == lease.id => {
                    record.expires_unix_ms = now_ms() + record.duration_ms;
                    write_lease(paths, &record).map_err(io)
                }
                _ => Err(StorageError::LeaseLost { blob: lease.blob }),
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(blob = %lease.blob))]
    async fn release_lease(&self, lease: Lease) -> Result<(), StorageError> {
        self.locked("release_lease", &lease.blob.clone(), move |paths| {
            let io = |error: io::Error| unavailable("release_lease", &lease.blob, &error);
            match read_lease(&paths.lease).map_err(io)? {
                Some(record) if record.id == lease.id => fs::remove_file(&paths.lease).map_err(io),
                _ => Err(StorageError::LeaseLost { blob: lease.blob }),
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(blob = %name))]
    async fn delete(&self, name: &str) -> Result<bool, StorageError> {
        let blob = name.to_owned();
        self.locked("delete", name, move |paths| {
            let io = |error: io::Error| unavailable("delete", &blob, &error);
            if leased(paths).map_err(io)? {
                return Err(StorageError::LeaseHeld { blob });
            }
            match fs::remove_file(&paths.blob) {
                Ok(()) => Ok(true),
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(error) => Err(io(error)),
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(blob = %prefix))]
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let root = self.root.clone();
        let wanted = prefix.to_owned();
        let mut names = tokio::task::spawn_blocking(move || {
            let mut names = Vec::new();
            collect_names(&root, "", &mut names)?;
            names.retain(|name| name.starts_with(&wanted));
            Ok::<_, io::Error>(names)
        })
        .await
        .map_err(|join| unavailable("list", prefix, &io::Error::other(join.to_string())))?
        .map_err(|error| unavailable("list", prefix, &error))?;
        names.sort();
        Ok(names)
    }
}

/// Every file under `dir` as a `/`-separated name, skipping the store's own directory.
fn collect_names(dir: &Path, prefix: &str, names: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(file_name) = entry.file_name().into_string() else {
            continue;
        };
        if prefix.is_empty() && file_name == INTERNAL_DIR {
            continue;
        }
        let name = format!("{prefix}{file_name}");
        if entry.file_type()?.is_dir() {
            collect_names(&entry.path(), &format!("{name}/"), names)?;
        } else {
            names.push(name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn store() -> (Dir, LocalDirStore) {
        let dir = std::env::temp_dir().join(format!("certsync-local-{}", uuid::Uuid::new_v4()));
        (Dir(dir.clone()), LocalDirStore::new(dir))
    }

    /// Move the lease's expiry into the past, as if its duration had run out.
    fn expire(store: &LocalDirStore, name: &str) {
        let paths = Paths::new(&store.root, name).unwrap();
        let mut record = read_lease(&paths.lease).unwrap().unwrap();
        record.expires_unix_ms = now_ms() - 1;
        write_lease(&paths, &record).unwrap();
    }

    #[tokio::test]
    async fn an_expired_lease_can_be_taken_and_its_old_holder_loses_it() {
        let (_dir, store) = store();
        let old = store.acquire_lease("locks/sync", MIN_LEASE_FOR_TEST).await.unwrap().unwrap();
        expire(&store, "locks/sync");

        let new = store.acquire_lease("locks/sync", MIN_LEASE_FOR_TEST).await.unwrap();
        assert!(new.is_some(), "an expired lease is free");
        assert!(matches!(store.renew_lease(&old).await, Err(StorageError::LeaseLost { .. })));
    }

    #[tokio::test]
    async fn an_expired_lease_nobody_took_can_be_renewed_and_written_over() {
        let (_dir, store) = store();
        let lease = store.acquire_lease("locks/sync", MIN_LEASE_FOR_TEST).await.unwrap().unwrap();
        expire(&store, "locks/sync");
        store.put("locks/sync", b"x".to_vec(), "text/plain").await.expect("an expired lease does not block writes");
        store.renew_lease(&lease).await.expect("like Azure, renewing an expired lease nobody took succeeds");
        let blocked = store.put("locks/sync", b"y".to_vec(), "text/plain").await;
        assert!(matches!(blocked, Err(StorageError::LeaseHeld { .. })), "{blocked:?}");
    }

    #[tokio::test]
    async fn names_that_escape_the_directory_are_refused() {
        let (_dir, store) = store();
        for name in ["../x", "/abs", "a//b", "a/./b", ".certsync/lock", "", "a\\b"] {
            let result = store.put(name, b"x".to_vec(), "text/plain").await;
            assert!(matches!(result, Err(StorageError::Unavailable { .. })), "{name:?}: {result:?}");
        }
    }

    const MIN_LEASE_FOR_TEST: Duration = Duration::from_secs(15);
}
