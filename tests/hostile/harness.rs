//! What every hostile test shares: the handler in-process, a deadline on every call, the proptest configuration
//! and the corpus reader.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use certsync::config::Settings;
use certsync::domain::{GroupId, TenantId};
use certsync::functions::AppState;
use certsync::functions::routes::router;
use certsync::storage::Stores;
use certsync::storage::{BlobStore, LocalDirStore};
use certsync::sync::subscriptions::{Action, SubscriptionBook, SubscriptionEntry, book_blob};
use http_body_util::BodyExt;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use tower::ServiceExt;

use crate::functions_host::{Dequeued, queue_trigger_envelope};

/// Longest any single invocation or settings load may take. The real budgets are far tighter (Graph wants a
/// webhook answer within 3 s, a validation answer within 10 s: change-notifications-delivery-webhooks); these paths
/// do no network I/O, so anything near this deadline is a hang, not a slow machine.
pub const DEADLINE: Duration = Duration::from_secs(5);

pub const TENANT_A: &str = "11111111-1111-1111-1111-111111111111";
pub const TENANT_B: &str = "22222222-2222-2222-2222-222222222222";
pub const GROUP_A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
pub const GROUP_B: &str = "bbbbbbbb-0000-0000-0000-000000000001";
pub const CLIENT_STATE: &str = "hostile-client-state";
pub const PREVIOUS_CLIENT_STATE: &str = "hostile-previous-client-state";
/// A subscription recorded in the state store, on a group that is no longer configured: a queue message for it
/// gets past the "is it ours" check and stops before any Graph call.
pub const KNOWN_SUBSCRIPTION: &str = "5d6d8a2e-0000-4000-8000-00000000cafe";
pub const UNCONFIGURED_GROUP: &str = "cccccccc-0000-0000-0000-000000000009";

/// A valid configuration: every property perturbs it, so a rejection can be blamed on the perturbed setting.
/// Graph and the authority point at the discard port: none of the paths under test may call them, and if one did it
/// would fail at once instead of waiting on a real network.
pub fn base_settings() -> HashMap<String, String> {
    [
        ("TENANT_A_ID", TENANT_A),
        ("TENANT_A_CREDENTIAL", "client-secret"),
        ("TENANT_A_CLIENT_ID", "33333333-3333-3333-3333-33333333333a"),
        ("TENANT_A_CLIENT_SECRET", "hostile-secret-a"),
        ("TENANT_B_ID", TENANT_B),
        ("TENANT_B_CLIENT_ID", "33333333-3333-3333-3333-33333333333b"),
        ("TENANT_B_CLIENT_SECRET", "hostile-secret-b"),
        ("SYNC_PAIRS", &format!("{GROUP_A}->{GROUP_B}")),
        ("CERTIFICATE_USER_ID_TEMPLATES", "subject-cn"),
        ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
        ("GRAPH_ENDPOINT", "https://127.0.0.1:9"),
        ("AUTHORITY_HOST", "https://127.0.0.1:9"),
        ("WEBHOOK_CLIENT_STATE", CLIENT_STATE),
        ("WEBHOOK_PREVIOUS_CLIENT_STATE", PREVIOUS_CLIENT_STATE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Two workers: a handler that blocks its worker cannot also stop the timer that reports it.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
}

/// proptest's defaults (`PROPTEST_CASES`, 256 unless set), without a regressions file (a failure is printed shrunk:
/// it belongs in the corpus) and with shrinking bounded so a hang found late cannot eat the CI budget.
pub fn runner() -> TestRunner {
    runner_for_a_share(1)
}

/// [`runner`] with `1/divisor` of the cases, for a property that sends two large requests per case.
pub fn runner_for_a_share(divisor: u32) -> TestRunner {
    let cases = (Config::default().cases / divisor).max(16);
    TestRunner::new(Config { cases, failure_persistence: None, max_shrink_time: 20_000, ..Config::default() })
}

/// Runs `future` on its own task and waits at most [`DEADLINE`]: a hang fails the test with `what` instead of
/// stalling CI, and a panic inside the handler fails it with the panic's message.
pub async fn bounded<F>(what: &str, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = tokio::spawn(future);
    match tokio::time::timeout(DEADLINE, task).await {
        Err(_) => panic!("{what}: no answer within {DEADLINE:?} (a hang)"),
        Ok(Err(error)) if error.is_panic() => {
            panic!("{what}: the handler panicked: {}", panic_text(error.into_panic()))
        }
        Ok(Err(error)) => panic!("{what}: the task failed: {error}"),
        Ok(Ok(output)) => output,
    }
}

/// The synchronous twin of [`bounded`], for the settings parser: on its own thread, so a hang cannot block the test.
pub fn bounded_sync<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = sender.send(work());
    });
    match receiver.recv_timeout(DEADLINE) {
        Ok(output) => output,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no result within {DEADLINE:?} (a hang)"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let payload = worker.join().expect_err("the worker ended without a result");
            panic!("{what}: panicked: {}", panic_text(payload))
        }
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// The custom handler's router over a local-folder state store holding one recorded subscription.
pub struct HostileApp {
    router: Router,
    pub state: AppState,
    _folder: TempDir,
}

/// What the router answered.
#[derive(Debug)]
pub struct Reply {
    /// The invocation's status (non-2xx fails the invocation at the host).
    pub status: u16,
    /// The body as text, for failure messages.
    pub text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
}

impl Reply {
    /// Every `Logs` line, joined: where the host's log gets the reason.
    pub fn logs(&self) -> String {
        self.json["Logs"]
            .as_array()
            .map(|l| l.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// The custom-handler contract: a JSON object with `Outputs` (object), `Logs` (array) and `ReturnValue`
    /// (functions-custom-handlers). Returns `self` so checks chain.
    pub fn assert_envelope(&self, what: &str) -> &Self {
        let object = self
            .json
            .as_object()
            .unwrap_or_else(|| panic!("{what}: the reply is not a JSON object: {:.300}", self.text));
        assert!(object.get("Outputs").is_some_and(Value::is_object), "{what}: no Outputs object: {:.300}", self.text);
        assert!(object.get("Logs").is_some_and(Value::is_array), "{what}: no Logs array: {:.300}", self.text);
        assert!(object.contains_key("ReturnValue"), "{what}: no ReturnValue: {:.300}", self.text);
        self
    }

    /// `Outputs.res.statusCode`: what Graph gets.
    pub fn http_status(&self) -> &str {
        self.json["Outputs"]["res"]["statusCode"].as_str().unwrap_or("")
    }

    /// `Outputs.res.body`.
    pub fn http_body(&self) -> &str {
        self.json["Outputs"]["res"]["body"].as_str().unwrap_or("")
    }

    /// How many messages the queue output binding gets.
    pub fn queued(&self) -> usize {
        self.json["Outputs"]["notifications"].as_array().map_or(0, Vec::len)
    }
}

impl HostileApp {
    pub async fn start() -> Self {
        let settings = Settings::load(&base_settings()).unwrap_or_else(|e| panic!("the base settings must load: {e}"));
        let folder = TempDir::new();
        let state_store = Arc::new(LocalDirStore::new(folder.0.join("state")));
        let logs = Arc::new(LocalDirStore::new(folder.0.join("logs")));
        let entry = SubscriptionEntry {
            id: KNOWN_SUBSCRIPTION.to_owned(),
            group: GroupId::parse(UNCONFIGURED_GROUP).expect("a GUID"),
            resource: format!("/groups/{UNCONFIGURED_GROUP}"),
            change_type: "updated".to_owned(),
            expiration: time::OffsetDateTime::now_utc() + time::Duration::days(2),
            last_action: Action::Created,
            last_action_at: time::OffsetDateTime::now_utc(),
        };
        let book =
            SubscriptionBook { schema_version: 1, subscriptions: BTreeMap::from([(entry.group.clone(), entry)]) };
        let tenant = TenantId::parse(TENANT_B).expect("a GUID");
        state_store
            .put(&book_blob(&tenant), serde_json::to_vec(&book).expect("serializable"), "application/json")
            .await
            .expect("seed the subscription book");
        let sync = certsync::app::sync_service(Arc::new(settings), Some(Stores { state: state_store, logs }))
            .expect("the Graph clients build without I/O");
        let state = AppState::new(Arc::new(sync));
        Self { router: router(state.clone()), state, _folder: folder }
    }

    /// `POST /<function>` with `body`, as the host does.
    pub async fn invoke(&self, function: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.invoke_at(&format!("/{function}"), body).await
    }

    /// `POST <path_and_query>` with `body`; bounded by [`DEADLINE`].
    pub async fn invoke_at(&self, path_and_query: &str, body: impl Into<Vec<u8>>) -> Reply {
        let request = Request::post(path_and_query)
            .header("content-type", "application/json")
            .header("x-azure-functions-invocationid", "00000000-0000-0000-0000-00000000beef")
            .body(Body::from(body.into()))
            .expect("a request");
        let router = self.router.clone();
        let what = format!("POST {:.200}", path_and_query);
        bounded(&what, async move {
            let response = router.oneshot(request).await.expect("the router is infallible");
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.expect("the body is readable").to_bytes();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Reply { status, text, json }
        })
        .await
    }
}

/// The HTTP envelope the host posts to `function-webhook` in envelope mode (functions.md, "HTTP triggers").
pub fn http_envelope(url: &str, query: Value, content_type: Option<&str>, body: Value) -> Value {
    let mut headers = serde_json::json!({"User-Agent": ["Microsoft-Graph-ChangeTracking/1.0"]});
    if let Some(content_type) = content_type {
        headers["Content-Type"] = serde_json::json!([content_type]);
    }
    serde_json::json!({
        "Data": {"req": {
            "Url": url, "Method": "POST", "Query": query, "Headers": headers, "Params": {}, "Body": body, "Identities": []
        }},
        "Metadata": {"sys": {"MethodName": "function-webhook", "UtcNow": "2026-11-22T10:00:00Z"}}
    })
}

pub const WEBHOOK_URL: &str = "https://certsync.azurewebsites.net/api/function-webhook";

/// A notification POST as Graph sends it, inside the host's envelope.
pub fn webhook_post(body: &str) -> Vec<u8> {
    http_envelope(WEBHOOK_URL, serde_json::json!({}), Some("application/json; charset=utf-8"), Value::from(body))
        .to_string()
        .into_bytes()
}

/// The envelope the real host posts to `function-notifications` for a queue message whose text is `text`: bound as
/// a string, so JSON-encoded twice, with the metadata as JSON text (`tests/support/src/functions_host.rs`).
pub fn queue_message(text: &str) -> Vec<u8> {
    let dequeued = Dequeued { id: "hostile-message", dequeue_count: 1, inserted: time::OffsetDateTime::now_utc() };
    queue_trigger_envelope("function-notifications", "message", text, &dequeued).to_string().into_bytes()
}

/// A queue-trigger envelope with `Data.message` and `Metadata` as given: the forms other hosts may send (the
/// message encoded once, as in the Microsoft Learn sample, or as an object) and forms no host sends.
pub fn queue_envelope(message: Value, metadata: Value) -> Vec<u8> {
    serde_json::json!({"Data": {"message": message}, "Metadata": metadata}).to_string().into_bytes()
}

/// One valid change notification (change-notifications-delivery-webhooks, a group `updated`).
pub fn notification(client_state: &str, group: &str) -> Value {
    serde_json::json!({
        "subscriptionId": "2a8b4c1e-0000-4000-8000-000000000001",
        "subscriptionExpirationDateTime": "2026-11-24T10:00:00Z",
        "clientState": client_state,
        "changeType": "updated",
        "resource": format!("Groups/{group}"),
        "tenantId": TENANT_A,
        "resourceData": {"@odata.type": "#Microsoft.Graph.Group", "@odata.id": format!("Groups/{group}"), "id": group}
    })
}

/// A temporary folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("certsync-hostile-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create a temporary folder");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The corpus: `tests/corpus/<family>/`, each file's expectation in the family's `expect.json`.
pub struct Corpus {
    pub files: Vec<(String, Vec<u8>)>,
    manifest: serde_json::Map<String, Value>,
}

impl Corpus {
    /// Reads a family, and checks that the manifest and the folder agree both ways: a file nobody declared an
    /// outcome for, or a declared file that is missing, fails the test rather than being skipped.
    pub fn load(family: &'static str, with_manifest: bool) -> Self {
        let dir = corpus_dir(family);
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.is_file() && path.file_name().is_some_and(|n| n != "expect.json"))
            .map(|path| {
                let name = path.file_name().and_then(|n| n.to_str()).expect("UTF-8 file names").to_owned();
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                (name, bytes)
            })
            .collect();
        files.sort();
        assert!(files.len() >= 5, "the {family} corpus is nearly empty: {}", dir.display());
        let manifest = if with_manifest {
            let text = std::fs::read_to_string(dir.join("expect.json")).expect("the family's expect.json");
            let manifest: serde_json::Map<String, Value> =
                serde_json::from_str(&text).expect("expect.json is a JSON object");
            for (name, _) in &files {
                assert!(manifest.contains_key(name), "{family}/{name} has no expected outcome in expect.json");
            }
            for name in manifest.keys() {
                assert!(
                    files.iter().any(|(f, _)| f == name),
                    "{family}/expect.json names {name}, which does not exist"
                );
            }
            manifest
        } else {
            serde_json::Map::new()
        };
        Self { files, manifest }
    }

    pub fn expected(&self, name: &str) -> &Value {
        &self.manifest[name]
    }
}

pub fn corpus_dir(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("corpus").join(family)
}

/// The outcome a file name declares: the text before the first `-` (`reject-truncated.json` → `reject`).
pub fn declared_outcome(name: &str) -> &str {
    name.split_once('-').map_or(name, |(prefix, _)| prefix)
}

/// Counts of the outcome classes a property reached (proptest runs its cases through an `Fn`): asserting each is
/// above zero keeps a generator from silently proving nothing, such as a parser that rejects every input.
#[derive(Default)]
pub struct Tally(std::cell::RefCell<BTreeMap<&'static str, usize>>);

impl Tally {
    pub fn hit(&self, class: &'static str) {
        *self.0.borrow_mut().entry(class).or_default() += 1;
    }

    /// Panics unless every class in `classes` was reached.
    pub fn assert_reached(&self, classes: &[&str]) {
        let counts = self.0.borrow();
        for class in classes {
            assert!(counts.get(class).is_some_and(|n| *n > 0), "the generator never reached {class:?}: {counts:?}");
        }
    }
}
