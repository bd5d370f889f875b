//! The incremental path as it runs in Azure: `certsync serve` (blob state in Azurite), a stand-in for the Functions
//! host between Graph (the emulator) and the binary, a real change notification, and the queue-triggered
//! `function-notifications` invocation that runs `run_incremental`. Also the webhook's acknowledgement latency.
//!
//! The host stand-in converts as the real host does (`tests/support/src/functions_host.rs`, each rule with its source in
//! Azure/azure-functions-host): a POST to `/api/function-webhook?code=…` is wrapped in the HTTP envelope and posted
//! to the handler, `Outputs.res` becomes the answer and `Outputs.notifications` becomes the queue's messages, one per
//! element. The queue is drained by this benchmark one message at a time, each posted JSON-encoded twice as the host
//! posts a message bound as a string, so each invocation can be timed alone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use certsync::storage::{AzureBlobStore, BlobStore, StorageConnection};
use graph_emulator::{Emulator, NewUser, RequestKind};
use serde_json::{Value, json};

use super::functions_host::{self, Dequeued, HttpTriggerRequest};
use super::{Pair, Row, binary};

const FUNCTION_KEY: &str = "bench-function-key";
const CLIENT_STATE: &str = "bench-client-state";
const WAIT: Duration = Duration::from_secs(120);

/// Azurite's well-known development account key (public).
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// `azurite-blob`: `$AZURITE_BIN`, else what `scripts/test` installs under `.tools/`.
struct Azurite {
    child: Child,
    port: u16,
}

impl Azurite {
    async fn start(dir: &Path) -> Result<Self, String> {
        let bin = std::env::var_os("AZURITE_BIN")
            .filter(|b| !b.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules/.bin/azurite-blob"));
        if !bin.exists() {
            return Err(format!("Azurite not found at {} (set AZURITE_BIN, or run scripts/test once)", bin.display()));
        }
        let port = free_port();
        let workspace = dir.join("azurite");
        std::fs::create_dir_all(&workspace).map_err(|e| e.to_string())?;
        let mut child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--location"])
            .arg(&workspace)
            .args(["--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("Azurite exited during start-up ({status})"));
            }
            if Instant::now() > deadline {
                return Err("Azurite did not start listening within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { child, port })
    }

    fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{}/devstoreaccount1",
            self.port
        )
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `certsync serve` as the host starts it; killed on drop.
pub(super) struct Serve {
    child: Child,
    port: u16,
    client: reqwest::Client,
}

impl Serve {
    pub(super) async fn spawn(env: &HashMap<String, String>) -> Self {
        let port = free_port();
        let child = Command::new(binary())
            .arg("serve")
            .env_clear()
            .envs(env)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start certsync serve");
        let serve = Self { child, port, client: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        while serve.client.get(serve.url("/")).send().await.is_err() {
            assert!(Instant::now() < deadline, "certsync serve did not answer GET / within 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        serve
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `POST /<function>` as the host does; the status and the reply.
    async fn invoke(&self, function: &str, envelope: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(&format!("/{function}")))
            .header("X-Azure-Functions-InvocationId", uuid::Uuid::new_v4().to_string())
            .json(envelope)
            .send()
            .await
            .expect("invoke the handler");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The kernel's high-water mark of the process's resident memory, in MiB.
    fn peak_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: f64 =
            status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib / 1024.0)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host's HTTP trigger in front of the handler, keeping the queue output.
struct HostShim {
    port: u16,
    shared: Arc<Shim>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Shim {
    handler: Mutex<Option<String>>,
    queue: Mutex<Vec<String>>,
    client: reqwest::Client,
}

impl HostShim {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shim::default());
        let app = Router::new().route("/api/function-webhook", any(http_trigger)).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, shared, server }
    }

    fn notification_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/function-webhook?code={FUNCTION_KEY}", self.port)
    }

    fn connect(&self, serve: &Serve) {
        *self.shared.handler.lock().unwrap() = Some(serve.url(""));
    }

    /// Waits (bounded) until at least `count` messages are queued, then takes them all.
    async fn take(&self, count: usize) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let mut queue = self.shared.queue.lock().unwrap();
                if queue.len() >= count {
                    return Ok(std::mem::take(&mut *queue));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("fewer than {count} notifications were queued within {WAIT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl Drop for HostShim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn http_trigger(
    State(shared): State<Arc<Shim>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    if query.get("code").map(String::as_str) != Some(FUNCTION_KEY) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut header_list: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in &headers {
        let value = value.to_str().unwrap_or_default().to_owned();
        match header_list.iter_mut().find(|(n, _)| n == name.as_str()) {
            Some((_, values)) => values.push(value),
            None => header_list.push((name.as_str().to_owned(), vec![value])),
        }
    }
    let url = format!("https://certsync.azurewebsites.net{uri}");
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let request = HttpTriggerRequest { url: &url, method: "POST", headers: header_list, body: &body, content_type };
    let envelope = functions_host::http_trigger_envelope("function-webhook", "req", &request);
    let Some(handler) = shared.handler.lock().unwrap().clone() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let Ok(answer) = shared.client.post(format!("{handler}/function-webhook")).json(&envelope).send().await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(reply) = answer.json::<Value>().await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let queued = functions_host::queue_output_messages(reply["Outputs"].get("notifications"));
    shared.queue.lock().unwrap().extend(queued.iter().map(|message| String::from_utf8_lossy(message).into_owned()));
    let res = &reply["Outputs"]["res"];
    let status = match &res["statusCode"] {
        Value::String(s) => s.parse().unwrap_or(500),
        Value::Number(n) => n.as_u64().unwrap_or(500) as u16,
        _ => 200,
    };
    let mut response = Response::new(axum::body::Body::from(res["body"].as_str().unwrap_or_default().to_owned()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(content_type) = res["headers"]["Content-Type"].as_str().and_then(|v| v.parse().ok()) {
        response.headers_mut().insert("content-type", content_type);
    }
    response
}

fn queue_envelope(message: &str) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    let dequeued = Dequeued { id: &id, dequeue_count: 1, inserted: time::OffsetDateTime::now_utc() };
    functions_host::queue_trigger_envelope("function-notifications", "message", message, &dequeued)
}

fn timer_envelope() -> Value {
    json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
        "Metadata": {"sys": {"MethodName": "function-cert-sync", "UtcNow": "2026-11-22T10:00:00Z", "RandGuid": uuid::Uuid::new_v4().to_string()}}
    })
}

/// Processes queued messages one at a time, each must succeed.
async fn drain(serve: &Serve, messages: &[String]) -> Result<(), String> {
    for message in messages {
        let (status, reply) = serve.invoke("function-notifications", &queue_envelope(message)).await;
        if status != 200 {
            return Err(format!("function-notifications answered {status}: {reply}"));
        }
    }
    Ok(())
}

/// "Incremental sync after one membership change": one Tenant A user joins the group (its match already in Tenant
/// B's group). Measured: the queue-triggered invocation that handles its notification, in a `certsync serve`
/// started fresh for it, so the peak memory is that of start-up plus this one run.
///
/// Before it, with the state the CLI runs left (the ledger is copied into blob storage): the timer function runs
/// once (a full sync with nothing to write, which also creates the subscriptions through the real handshake), and
/// one warm-up change per group is handled, because a group's first notification has no delta position yet and
/// reconciles its pair in full.
pub(super) async fn run(
    size: usize,
    emulator: &Emulator,
    pair: &Pair,
    env: &HashMap<String, String>,
    state: &Path,
    dir: &Path,
) -> Result<Vec<Row>, String> {
    let directory = emulator.directory();
    let azurite = Azurite::start(dir).await?;
    let connection = StorageConnection::ConnectionString(azurite.connection_string().into());
    let store = AzureBlobStore::connect(&connection, None, "certsync-state").await.map_err(|e| e.to_string())?;
    let ledger_blob = format!("ledger/{}.json", pair.tenant_b);
    let ledger = std::fs::read(state.join(&ledger_blob)).map_err(|e| format!("no ledger from the CLI runs: {e}"))?;
    store.put(&ledger_blob, ledger, "application/json").await.map_err(|e| e.to_string())?;

    let shim = HostShim::start().await;
    let mut env = env.clone();
    env.insert("AzureWebJobsStorage".into(), azurite.connection_string());
    env.insert("WEBHOOK_CLIENT_STATE".into(), CLIENT_STATE.into());
    env.insert("WEBHOOK_NOTIFICATION_URL".into(), shim.notification_url());

    let serve = Serve::spawn(&env).await;
    shim.connect(&serve);
    let (status, reply) = serve.invoke("function-cert-sync", &timer_envelope()).await;
    if status != 200 || directory.subscriptions(&pair.tenant_a).is_empty() {
        return Err(format!("the timer run did not sync and subscribe ({status}): {reply}"));
    }
    // Warm-up: the Tenant B half of the coming match joins its group; a device joins Tenant A's.
    let joining_b = directory.add_user(&pair.tenant_b, NewUser::new("incremental@tenant-b.example"));
    directory.add_member(&pair.tenant_b, &pair.group_b, &joining_b);
    let device = directory.add_device(&pair.tenant_a, "warm-up device");
    directory.add_member(&pair.tenant_a, &pair.group_a, &device);
    drain(&serve, &shim.take(2).await?).await?;
    drop(serve);

    // The measured change, in a fresh process.
    let serve = Serve::spawn(&env).await;
    shim.connect(&serve);
    let joining_a = directory.add_user(&pair.tenant_a, NewUser::new("incremental@tenant-a.example"));
    directory.add_member(&pair.tenant_a, &pair.group_a, &joining_a);
    let messages = shim.take(1).await?;
    directory.clear_requests();
    let started = Instant::now();
    let (status, reply) = serve.invoke("function-notifications", &queue_envelope(&messages[0])).await;
    let wall = started.elapsed();
    let peak_mib = serve.peak_mib();
    if status != 200 {
        return Err(format!("function-notifications answered {status}: {reply}"));
    }
    let converged = directory.user(&pair.tenant_b, &joining_b).is_some_and(|u| !u.certificate_user_ids.is_empty());
    let seen = Seen::of(&directory);
    let throttled = seen.throttled;
    let affected = &reply["ReturnValue"]["scope"]["affectedUsers"];
    let change = Row {
        size,
        scenario: "incremental: one membership change".into(),
        who: "certsync",
        wall,
        reads: seen.reads,
        writes: seen.writes,
        batches: seen.batches,
        throttle_wait_ms: 0,
        peak_mib,
        note: format!(
            "`certsync serve`, queue-triggered function-notifications; counts from the emulator's log ({throttled} × 429); affected users {affected}{}",
            if converged { "" } else { "; NOT converged" }
        ),
        ..Row::default()
    };
    let mut rows = vec![change];
    for per_post in [BURST, 1] {
        rows.push(burst(size, &serve, &shim, &directory, pair, &azurite, per_post).await?);
    }
    Ok(rows)
}

/// The Graph requests (token requests aside) in the emulator's log, by kind, and the throttled ones.
struct Seen {
    reads: u64,
    writes: u64,
    batches: u64,
    throttled: usize,
}

impl Seen {
    fn of(directory: &graph_emulator::Directory) -> Self {
        let requests = directory.requests();
        let graph = requests.iter().filter(|r| r.tenant.is_some());
        let count = |kind: RequestKind| graph.clone().filter(|r| r.kind == kind).count() as u64;
        Self {
            reads: count(RequestKind::Read),
            writes: count(RequestKind::Write),
            batches: count(RequestKind::Batch),
            throttled: graph.clone().filter(|r| r.status == 429).count(),
        }
    }
}

/// Notifications in a storm (issue 20).
const BURST: usize = 1_000;

/// A storm of [`BURST`] notifications for one group (the Tenant A group's subscription, nothing changed since the
/// last one), `per_post` to a POST: what the webhook queues, and what working through the queue costs in Graph
/// requests and blobs written. Graph batches notifications into POSTs as it sees fit, so both ends are measured.
async fn burst(
    size: usize,
    serve: &Serve,
    shim: &HostShim,
    directory: &graph_emulator::Directory,
    pair: &Pair,
    azurite: &Azurite,
    per_post: usize,
) -> Result<Row, String> {
    let subscription = directory.subscriptions(&pair.tenant_a).into_iter().next().ok_or("no Tenant A subscription")?;
    let item = json!({"subscriptionId": subscription.id, "clientState": CLIENT_STATE, "changeType": "updated",
        "resource": format!("Groups/{}", pair.group_a), "tenantId": pair.tenant_a,
        "resourceData": {"@odata.type": "#Microsoft.Graph.Group", "@odata.id": format!("Groups/{}", pair.group_a),
            "id": pair.group_a}});
    let connection = StorageConnection::ConnectionString(azurite.connection_string().into());
    let logs = AzureBlobStore::connect(&connection, None, "cert-auth").await.map_err(|e| e.to_string())?;
    let state = AzureBlobStore::connect(&connection, None, "certsync-state").await.map_err(|e| e.to_string())?;
    let etags = async |store: &AzureBlobStore| -> Result<BTreeMap<String, String>, String> {
        let mut etags = BTreeMap::new();
        for name in store.list("").await.map_err(|e| e.to_string())? {
            if let Some(blob) = store.get(&name).await.map_err(|e| e.to_string())? {
                etags.insert(name, blob.etag.as_str().to_owned());
            }
        }
        Ok(etags)
    };
    let (logs_before, state_before) = (logs.list("").await.map_err(|e| e.to_string())?.len(), etags(&state).await?);
    directory.clear_requests();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let items: Vec<Value> = std::iter::repeat_n(item, BURST).collect();
    for post in items.chunks(per_post) {
        let answer = client
            .post(shim.notification_url())
            .json(&json!({ "value": post }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if answer.status() != 202 {
            return Err(format!("the webhook answered {}", answer.status()));
        }
    }
    let messages = shim.take(0).await?;
    drain(serve, &messages).await?;
    let wall = started.elapsed();
    let changed = {
        let after = etags(&state).await?;
        after.iter().filter(|(name, etag)| state_before.get(*name) != Some(*etag)).count()
    };
    let logs_written = logs.list("").await.map_err(|e| e.to_string())?.len() - logs_before;
    let seen = Seen::of(directory);
    Ok(Row {
        size,
        scenario: format!("burst: {BURST} notifications for one group, {per_post} per POST"),
        who: "certsync",
        wall,
        reads: seen.reads,
        writes: seen.writes,
        batches: seen.batches,
        throttle_wait_ms: 0,
        peak_mib: serve.peak_mib(),
        note: format!(
            "{} queue message(s) from {} POST(s); blobs written: {logs_written} run logs, {changed} state blobs; wall \
             time from the first POST to the last message handled, one at a time",
            messages.len(),
            BURST.div_ceil(per_post)
        ),
        ..Row::default()
    })
}

/// Webhook acknowledgement under load: `burst` notification POSTs (the host's HTTP envelope, as Graph's POST becomes
/// it) to `function-webhook` of a running `certsync serve`, `concurrency` at a time. Latencies sorted.
pub(super) async fn webhook_ack(env: &HashMap<String, String>, burst: usize, concurrency: usize) -> Vec<Duration> {
    let mut env = env.clone();
    env.insert("WEBHOOK_CLIENT_STATE".into(), CLIENT_STATE.into());
    let serve = Serve::spawn(&env).await;
    let envelopes: Vec<String> = (0..burst)
        .map(|i| {
            let body = json!({"value": [{"subscriptionId": format!("00000000-0000-4000-8000-{i:012}"),
                "clientState": CLIENT_STATE, "changeType": "updated", "resource": "Groups/g", "tenantId": "t",
                "resourceData": {"@odata.type": "#Microsoft.Graph.Group", "id": "g"}}]});
            let body = body.to_string();
            let url = format!("https://certsync.azurewebsites.net/api/function-webhook?code={FUNCTION_KEY}");
            let headers = vec![("Content-Type".to_owned(), vec!["application/json".to_owned()])];
            let request = HttpTriggerRequest {
                url: &url,
                method: "POST",
                headers,
                body: body.as_bytes(),
                content_type: Some("application/json"),
            };
            functions_host::http_trigger_envelope("function-webhook", "req", &request).to_string()
        })
        .collect();
    let url = serve.url("/function-webhook");
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(burst);
    for envelope in envelopes {
        let (client, url, semaphore) = (serve.client.clone(), url.clone(), semaphore.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await.unwrap();
            let sent = Instant::now();
            let response =
                client.post(&url).header("content-type", "application/json").body(envelope).send().await.unwrap();
            let reply: Value = response.json().await.unwrap();
            assert_eq!(reply["Outputs"]["res"]["statusCode"], "202", "{reply}");
            sent.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(burst);
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    latencies.sort();
    latencies
}
