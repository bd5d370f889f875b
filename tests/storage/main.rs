//! The storage layer against a real Azurite and against the local directory store.
//!
//! The `BlobStore` contract is written once (module `contract`) and run on both stores by `contract_tests!`; each
//! Azurite test starts its own emulator on a free port.

use certsync_test_support::azurite;

use std::{path::PathBuf, sync::Arc, time::Duration};

use azurite::Azurite;
use certsync::storage::{
    AzureBlobStore, AzureBlobStoreOptions, BlobStore, LocalDirStore, RUN_LOG_STDOUT_PREFIX, RetryPolicy,
    StorageConnection, StorageError, UploadOutcome, run_log_names, upload_run_log_with_fallback,
};
use secrecy::SecretString;
use time::macros::datetime;

const CONTAINER: &str = "certsync-test";

/// A store under test and what keeps it alive (the emulator process or the directory).
struct Harness {
    store: Arc<dyn BlobStore>,
    _azurite: Option<Azurite>,
    _dir: Option<TempDir>,
}

impl Harness {
    async fn azurite() -> Harness {
        let azurite = Azurite::start().await;
        let store = connect(&azurite, AzureBlobStoreOptions::default()).await;
        Harness { store: Arc::new(store), _azurite: Some(azurite), _dir: None }
    }

    fn local_dir() -> Harness {
        let dir = TempDir::new();
        Harness { store: Arc::new(LocalDirStore::new(dir.path.clone())), _azurite: None, _dir: Some(dir) }
    }
}

async fn connect(azurite: &Azurite, options: AzureBlobStoreOptions) -> AzureBlobStore {
    let connection = StorageConnection::ConnectionString(SecretString::from(azurite.connection_string()));
    AzureBlobStore::connect_with_options(&connection, None, CONTAINER, options)
        .await
        .unwrap_or_else(|error| panic!("connect to Azurite: {error:?}\n{}", azurite.output()))
}

/// A fresh directory, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("certsync-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The behaviour every `BlobStore` must have.
mod contract {
    use super::*;
    use certsync::storage::{ETag, WriteBody, read_json, update_json, upload_run_log};

    pub async fn get_of_a_missing_blob_is_none(store: Arc<dyn BlobStore>) {
        assert_eq!(store.get("nothing/here.json").await.unwrap(), None);
        store.put("file.txt", b"x".to_vec(), "text/plain").await.unwrap();
        assert_eq!(store.get("file.txt/inner").await.unwrap(), None, "a blob's name is not a folder");
    }

    pub async fn put_then_get_round_trips_bytes_and_etag(store: Arc<dyn BlobStore>) {
        store.put("2024/01/02/report.txt", b"hello\nworld".to_vec(), "text/plain").await.unwrap();
        let read = store.get("2024/01/02/report.txt").await.unwrap().expect("blob exists");
        assert_eq!(read.bytes, b"hello\nworld");

        let etag = store.put_if("state.json", b"{}".to_vec(), "application/json", None).await.unwrap();
        let read = store.get("state.json").await.unwrap().expect("blob exists");
        assert_eq!((read.bytes.as_slice(), &read.etag), (&b"{}"[..], &etag));
    }

    pub async fn put_if_with_a_stale_etag_is_condition_not_met(store: Arc<dyn BlobStore>) {
        let first = store.put_if("doc.json", b"1".to_vec(), "application/json", None).await.unwrap();
        let second = store.put_if("doc.json", b"2".to_vec(), "application/json", Some(&first)).await.unwrap();
        assert_ne!(first, second, "a write changes the ETag");

        let stale = store.put_if("doc.json", b"3".to_vec(), "application/json", Some(&first)).await;
        assert!(matches!(stale, Err(StorageError::ConditionNotMet { ref blob }) if blob == "doc.json"), "{stale:?}");
        let kept = store.get("doc.json").await.unwrap().unwrap();
        assert_eq!((kept.bytes.as_slice(), &kept.etag), (&b"2"[..], &second), "the stale write changed nothing");
    }

    pub async fn put_if_absent_on_an_existing_blob_is_condition_not_met(store: Arc<dyn BlobStore>) {
        store.put("doc.json", b"1".to_vec(), "application/json").await.unwrap();
        let result = store.put_if("doc.json", b"2".to_vec(), "application/json", None).await;
        assert!(matches!(result, Err(StorageError::ConditionNotMet { .. })), "{result:?}");
        let made_up = ETag::new("\"0x8D000000000000\"");
        let result = store.put_if("missing.json", b"2".to_vec(), "application/json", Some(&made_up)).await;
        assert!(matches!(result, Err(StorageError::ConditionNotMet { .. })), "{result:?}");
    }

    pub async fn concurrent_update_json_loses_no_increment(store: Arc<dyn BlobStore>) {
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..20 {
                        update_json(store.as_ref(), "counter.json", 100, |n: Option<u64>| n.unwrap_or(0) + 1)
                            .await
                            .expect("update succeeds within 100 attempts");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer task");
        }
        let (count, _) = read_json::<u64>(store.as_ref(), "counter.json").await.unwrap().unwrap();
        assert_eq!(count, 40);
    }

    pub async fn second_acquire_while_held_returns_none(store: Arc<dyn BlobStore>) {
        let held = store.acquire_lease("locks/sync", Duration::from_secs(60)).await.unwrap();
        assert!(held.is_some());
        let second = store.acquire_lease("locks/sync", Duration::from_secs(60)).await.unwrap();
        assert_eq!(second, None);
    }

    pub async fn acquire_creates_the_missing_blob_empty(store: Arc<dyn BlobStore>) {
        let lease = store.acquire_lease("locks/new", Duration::from_secs(15)).await.unwrap().unwrap();
        assert_eq!(lease.blob(), "locks/new");
        assert_eq!(store.get("locks/new").await.unwrap().unwrap().bytes, b"");
    }

    pub async fn released_lease_can_be_reacquired_and_renewed(store: Arc<dyn BlobStore>) {
        let first = store.acquire_lease("locks/sync", Duration::from_secs(15)).await.unwrap().unwrap();
        store.renew_lease(&first).await.expect("the holder renews");
        store.release_lease(first.clone()).await.expect("the holder releases");

        let second = store.acquire_lease("locks/sync", Duration::from_secs(15)).await.unwrap().expect("free again");
        assert_ne!(second.id(), first.id());
        store.renew_lease(&second).await.expect("the new holder renews");
        let stale = store.renew_lease(&first).await;
        assert!(matches!(stale, Err(StorageError::LeaseLost { .. })), "{stale:?}");
        let stale = store.release_lease(first).await;
        assert!(matches!(stale, Err(StorageError::LeaseLost { .. })), "{stale:?}");
        store.release_lease(second).await.unwrap();
    }

    pub async fn leased_blob_cannot_be_written(store: Arc<dyn BlobStore>) {
        let _lease = store.acquire_lease("locks/sync", Duration::from_secs(60)).await.unwrap().unwrap();
        let put = store.put("locks/sync", b"x".to_vec(), "text/plain").await;
        assert!(matches!(put, Err(StorageError::LeaseHeld { .. })), "{put:?}");
    }

    pub async fn a_deleted_blob_is_gone_and_a_leased_one_is_kept(store: Arc<dyn BlobStore>) {
        store.put("ledger/t.json", b"{}".to_vec(), "application/json").await.unwrap();
        assert!(store.delete("ledger/t.json").await.unwrap(), "the blob existed");
        assert_eq!(store.get("ledger/t.json").await.unwrap(), None);
        assert!(!store.delete("ledger/t.json").await.unwrap(), "a second delete finds nothing");

        let _lease = store.acquire_lease("locks/t.lock", Duration::from_secs(60)).await.unwrap().unwrap();
        let refused = store.delete("locks/t.lock").await;
        assert!(matches!(refused, Err(StorageError::LeaseHeld { .. })), "{refused:?}");
        assert!(store.get("locks/t.lock").await.unwrap().is_some(), "the leased blob is still there");
    }

    pub async fn corrupt_json_is_reported_and_left_untouched(store: Arc<dyn BlobStore>) {
        store.put("state.json", b"{not json".to_vec(), "application/json").await.unwrap();
        let before = store.get("state.json").await.unwrap().unwrap();

        let read = read_json::<u64>(store.as_ref(), "state.json").await;
        assert!(matches!(read, Err(StorageError::Corrupt { ref blob, .. }) if blob == "state.json"), "{read:?}");
        let update = update_json(store.as_ref(), "state.json", 5, |_: Option<u64>| 1).await;
        assert!(matches!(update, Err(StorageError::Corrupt { .. })), "{update:?}");

        assert_eq!(store.get("state.json").await.unwrap().unwrap(), before, "the corrupt blob was not replaced");
    }

    pub async fn list_returns_sorted_names_under_a_prefix(store: Arc<dyn BlobStore>) {
        for name in ["logs/2024/02/b.log", "logs/2024/01/a.log", "state.json", "logs/2023/12/z.log"] {
            store.put(name, b"x".to_vec(), "text/plain").await.unwrap();
        }
        assert_eq!(store.list("logs/2024/").await.unwrap(), ["logs/2024/01/a.log", "logs/2024/02/b.log"]);
        assert_eq!(store.list("").await.unwrap().len(), 4);
    }

    pub async fn upload_run_log_writes_the_text_and_json_blobs(store: Arc<dyn BlobStore>) {
        let started = datetime!(2024-06-30 23:59:58 UTC);
        let outcome = upload_run_log(
            store.as_ref(),
            started,
            "run-1",
            Arc::new(|out| out.write_all(b"line one\nline two\n")),
            Arc::new(|out| out.write_all(br#"{"ok":true}"#)),
            RetryPolicy::default(),
        )
        .await;
        let (log, json) = run_log_names(started, "run-1");
        assert!(
            matches!(&outcome, UploadOutcome::Uploaded { log_blob, json_blob } if *log_blob == log && *json_blob == json),
            "{outcome:?}"
        );
        assert_eq!(store.get(&log).await.unwrap().unwrap().bytes, b"line one\nline two\n");
        assert_eq!(store.get(&json).await.unwrap().unwrap().bytes, br#"{"ok":true}"#);
        assert_eq!(store.list("2024/06/30/").await.unwrap(), [json, log]);
    }

    /// A body several times the size of the parts stores cut it into (1 MiB), ending in a partial part.
    fn large_body() -> Vec<u8> {
        (0..3_500_000u32).map(|i| (i % 253) as u8).collect()
    }

    pub async fn a_streamed_body_larger_than_a_part_arrives_whole(store: Arc<dyn BlobStore>) {
        store.put("2024/report.json", b"older content".to_vec(), "application/json").await.unwrap();
        let body = large_body();
        // Written in small pieces, as a serializer writes.
        let write: WriteBody = Arc::new(|out| large_body().chunks(4096).try_for_each(|piece| out.write_all(piece)));
        store.put_streamed("2024/report.json", "application/json", write).await.unwrap();
        let stored = store.get("2024/report.json").await.unwrap().expect("the blob");
        assert_eq!(stored.bytes.len(), body.len());
        assert!(stored.bytes == body, "the stored body differs from what was written");
    }

    pub async fn a_streamed_empty_body_is_an_empty_blob(store: Arc<dyn BlobStore>) {
        store.put_streamed("empty.log", "text/plain", Arc::new(|_| Ok(()))).await.unwrap();
        assert_eq!(store.get("empty.log").await.unwrap().expect("the blob").bytes, b"");
    }

    pub async fn a_streamed_body_whose_writer_fails_leaves_the_blob_as_it_was(store: Arc<dyn BlobStore>) {
        store.put("2024/report.json", b"older content".to_vec(), "application/json").await.unwrap();
        // Two full parts are handed over before the writer fails.
        let write: WriteBody = Arc::new(|out| {
            out.write_all(&large_body()[..2_500_000])?;
            Err(std::io::Error::other("the report could not be serialized"))
        });
        let error = store.put_streamed("2024/report.json", "application/json", write).await.unwrap_err();
        let StorageError::Unavailable { source, .. } = &error else { panic!("expected Unavailable, got {error:?}") };
        assert!(source.to_string().contains("the report could not be serialized"), "{error}: {source}");
        assert_eq!(store.get("2024/report.json").await.unwrap().unwrap().bytes, b"older content");
        assert_eq!(store.list("").await.unwrap(), ["2024/report.json"], "nothing else was created");
    }
}

/// Run each contract test on both stores.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod on_azurite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let harness = super::Harness::azurite().await;
                    super::contract::$name(harness.store.clone()).await;
                }
            )*
        }
        mod on_local_dir {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let harness = super::Harness::local_dir();
                    super::contract::$name(harness.store.clone()).await;
                }
            )*
        }
    };
}

contract_tests!(
    get_of_a_missing_blob_is_none,
    put_then_get_round_trips_bytes_and_etag,
    put_if_with_a_stale_etag_is_condition_not_met,
    put_if_absent_on_an_existing_blob_is_condition_not_met,
    concurrent_update_json_loses_no_increment,
    second_acquire_while_held_returns_none,
    acquire_creates_the_missing_blob_empty,
    released_lease_can_be_reacquired_and_renewed,
    leased_blob_cannot_be_written,
    a_deleted_blob_is_gone_and_a_leased_one_is_kept,
    corrupt_json_is_reported_and_left_untouched,
    list_returns_sorted_names_under_a_prefix,
    upload_run_log_writes_the_text_and_json_blobs,
    a_streamed_body_larger_than_a_part_arrives_whole,
    a_streamed_empty_body_is_an_empty_blob,
    a_streamed_body_whose_writer_fails_leaves_the_blob_as_it_was,
);

#[tokio::test]
async fn connect_creates_the_container_once_and_reconnects() {
    let azurite = Azurite::start().await;
    let first = connect(&azurite, AzureBlobStoreOptions::default()).await;
    first.put("a.txt", b"a".to_vec(), "text/plain").await.unwrap();

    let second = connect(&azurite, AzureBlobStoreOptions::default()).await;
    assert_eq!(second.get("a.txt").await.unwrap().unwrap().bytes, b"a");
    assert_eq!(second.container_url().as_str(), format!("{}/{CONTAINER}", azurite.blob_endpoint()));
}

#[tokio::test]
async fn upload_run_log_with_azurite_stopped_falls_back_to_stdout() {
    let mut azurite = Azurite::start().await;
    let options = AzureBlobStoreOptions { max_retries: 0, ..Default::default() };
    let store = connect(&azurite, options).await;
    azurite.stop();

    let text = "run 42 started\nuser alice: added X509:<SKI>ab12\nrun 42 finished";
    let retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
    };
    let mut stdout = Vec::new();
    let outcome = upload_run_log_with_fallback(
        &store,
        datetime!(2024-06-30 12:00:00 UTC),
        "run-42",
        Arc::new(move |out| out.write_all(text.as_bytes())),
        Arc::new(|out| out.write_all(b"{}")),
        retry,
        &mut stdout,
    )
    .await;

    let UploadOutcome::FellBackToStdout { error } = outcome else {
        panic!("expected the stdout fallback, got {outcome:?}");
    };
    assert!(matches!(error, StorageError::Unavailable { operation: "put", .. }), "{error:?}");
    let printed = String::from_utf8(stdout).unwrap();
    for line in text.lines() {
        assert!(
            printed.contains(&format!("{RUN_LOG_STDOUT_PREFIX} run-42: {line}\n")),
            "missing {line:?} in:\n{printed}"
        );
    }
    assert!(printed.lines().all(|line| line.starts_with(RUN_LOG_STDOUT_PREFIX)), "{printed}");
}

#[tokio::test]
async fn a_wrong_account_key_fails_with_an_actionable_message_and_no_secret() {
    let azurite = Azurite::start().await;
    // Valid base64, wrong key: every signature Azurite checks fails.
    let wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmc=";
    let connection = StorageConnection::ConnectionString(SecretString::from(format!(
        "AccountName=devstoreaccount1;AccountKey={wrong_key};BlobEndpoint={}",
        azurite.blob_endpoint()
    )));
    let options = AzureBlobStoreOptions { max_retries: 0, ..Default::default() };
    let error = AzureBlobStore::connect_with_options(&connection, None, CONTAINER, options)
        .await
        .expect_err("a wrong key is refused");

    let StorageError::Unavailable { ref source, .. } = error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert_eq!(source.status(), Some(403), "{error:?}");
    let shown = format!("{error} / {source} / {error:?} / {connection:?}");
    assert!(shown.contains("account key"), "the message says what to check: {shown}");
    assert!(!shown.contains(wrong_key), "{shown}");
    assert!(!shown.contains("sig=") || shown.contains("sig=REDACTED"), "{shown}");
}

#[tokio::test]
async fn identity_settings_need_a_credential_and_https() {
    let connection =
        StorageConnection::Identity { blob_service_uri: "https://acct.blob.core.windows.net".parse().unwrap() };
    let error = AzureBlobStore::connect(&connection, None, CONTAINER).await.unwrap_err();
    assert!(matches!(error, StorageError::InvalidConnection(_)), "{error:?}");
}

#[tokio::test]
async fn local_stores_sharing_a_directory_lose_no_update() {
    let dir = TempDir::new();
    let writers: Vec<_> = (0..2)
        .map(|_| {
            // Two independent stores (as two processes would have) on one directory.
            let store = LocalDirStore::new(dir.path.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    certsync::storage::update_json(&store, "counter.json", 100, |n: Option<u64>| n.unwrap_or(0) + 1)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let store = LocalDirStore::new(dir.path.clone());
    let (count, _) = certsync::storage::read_json::<u64>(&store, "counter.json").await.unwrap().unwrap();
    assert_eq!(count, 40);
}

#[test]
fn run_log_names_sort_by_time_and_differ_within_a_second() {
    let runs = [
        (datetime!(2023-12-31 23:59:59 UTC), "zz"),
        (datetime!(2024-01-01 00:00:00 UTC), "b"),
        (datetime!(2024-01-01 00:00:00 UTC), "a"),
        (datetime!(2024-01-01 00:00:01 +01:00), "a"),
        (datetime!(2024-01-01 09:00:00 UTC), "0"),
        (datetime!(2024-10-01 00:00:00 UTC), "0"),
    ];
    let mut by_name: Vec<_> = runs.iter().map(|(at, id)| (run_log_names(*at, id).0, *at)).collect();
    by_name.sort();
    assert!(by_name.windows(2).all(|pair| pair[0].1 <= pair[1].1), "name order is time order: {by_name:#?}");

    let (same_second_a, _) = run_log_names(datetime!(2024-01-01 00:00:00 UTC), "a");
    let (same_second_b, _) = run_log_names(datetime!(2024-01-01 00:00:00 UTC), "b");
    assert_ne!(same_second_a, same_second_b);
    assert_eq!(same_second_a, "2024/01/01/log_20240101000000_a.log");
}
