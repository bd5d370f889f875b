//! A stand-in for the Azure Functions host between Graph (the emulator) and the real binary, since the host itself
//! cannot run here. Every conversion it applies is the real host's, from `tests/support/src/functions_host.rs`, where
//! each rule cites the host's source file and method:
//! - the HTTP trigger (`authLevel: function`): a raw POST to `/api/function-webhook` is refused with 401 unless its
//!   `?code=` is the function key; otherwise it is wrapped in the envelope the host builds (`GetRequestAsJObject`),
//!   posted to `/function-webhook`, and `Outputs.res` becomes the HTTP answer. The `notifications` queue output is
//!   turned into messages as the host's queue binding does (one per array element, base64 strings decoded) and
//!   stored *before* that answer; a non-2xx invocation answers 500.
//! - the queue trigger: each message is posted to `/function-notifications` as the host posts a message bound as a
//!   string, JSON-encoded twice (`GetHttpScriptInvocationContextValue`), with `DequeueCount`, `Id`, … as JSON text,
//!   at most `batchSize` (4) at once; a non-2xx answer puts it back after a visibility timeout, and after
//!   `maxDequeueCount` (5) attempts it goes to the poison list. The worker's `followUps` queue output (and the
//!   timer's, through [`HostShim::take_outputs`]) goes back onto the same queue when the invocation succeeded.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::functions_host::{self, Dequeued, HttpTriggerRequest};

/// host.json `extensions.queues`.
pub const MAX_DEQUEUE_COUNT: u64 = 5;
const BATCH_SIZE: usize = 4;
/// Shorter than host.json's 30 s so tests stay quick; the behaviour is the same.
const VISIBILITY_TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub id: String,
    pub text: String,
    pub dequeue_count: u64,
    inserted: time::OffsetDateTime,
    visible_at: Instant,
}

/// One queue-trigger invocation and its answer.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub message: String,
    pub dequeue_count: u64,
    pub status: u16,
    pub reply: Value,
}

#[derive(Default)]
struct Shared {
    handler: OnceLock<String>,
    function_key: String,
    client: reqwest::Client,
    queue: Mutex<VecDeque<QueueMessage>>,
    in_flight: AtomicUsize,
    poison: Mutex<Vec<QueueMessage>>,
    /// Every message the webhook queued, in order.
    history: Mutex<Vec<String>>,
    invocations: Mutex<Vec<Invocation>>,
    webhook_posts: AtomicUsize,
}

pub struct HostShim {
    port: u16,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl HostShim {
    /// Binds a free port now (its URL goes into the handler's settings); [`HostShim::connect`] names the handler.
    pub async fn bind(function_key: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the host shim");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared { function_key: function_key.to_owned(), ..Shared::default() });
        let app = Router::new().route("/api/function-webhook", any(http_trigger)).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let worker = tokio::spawn(queue_worker(shared.clone()));
        Self { port, shared, tasks: vec![server, worker] }
    }

    /// The handler's base URL (`http://127.0.0.1:<FUNCTIONS_CUSTOMHANDLER_PORT>`).
    pub fn connect(&self, handler_port: u16) {
        let _ = self.shared.handler.set(format!("http://127.0.0.1:{handler_port}"));
    }

    /// What `WEBHOOK_NOTIFICATION_URL` is set to: the function URL with its key, as in Azure.
    pub fn notification_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/function-webhook?code={}", self.port, self.shared.function_key)
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Puts a message on the queue, as replaying or a second delivery would.
    pub fn enqueue(&self, text: &str) {
        enqueue(&self.shared, text.to_owned());
    }

    /// The `followUps` queue output of an invocation the test made itself (the timer's): the host writes each
    /// message of a successful invocation's output binding to its queue (`graph-notifications`), as for the webhook.
    pub fn take_outputs(&self, status: u16, reply: &Value) {
        enqueue_outputs(&self.shared, status, reply, FOLLOW_UPS);
    }

    pub fn history(&self) -> Vec<String> {
        self.shared.history.lock().unwrap().clone()
    }

    pub fn invocations(&self) -> Vec<Invocation> {
        self.shared.invocations.lock().unwrap().clone()
    }

    pub fn poison(&self) -> Vec<QueueMessage> {
        self.shared.poison.lock().unwrap().clone()
    }

    pub fn webhook_posts(&self) -> usize {
        self.shared.webhook_posts.load(Ordering::SeqCst)
    }

    fn idle(&self) -> bool {
        self.shared.queue.lock().unwrap().is_empty() && self.shared.in_flight.load(Ordering::SeqCst) == 0
    }

    /// Waits (bounded) until `condition` holds and the queue is drained.
    pub async fn settle(&self, what: &str, timeout: Duration, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if condition() && self.idle() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached within {timeout:?}; invocations: {:#?}",
                self.invocations()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for HostShim {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The queue output of `function-cert-sync` and `function-notifications` (their function.json), to the same queue.
const FOLLOW_UPS: &str = "followUps";

/// The messages of output binding `name` go to the queue when the invocation succeeded; a failed invocation's
/// outputs are not flushed (the host binds outputs after the function completes).
fn enqueue_outputs(shared: &Shared, status: u16, reply: &Value, name: &str) {
    if !(200..300).contains(&status) {
        return;
    }
    for message in functions_host::queue_output_messages(reply["Outputs"].get(name)) {
        let text = String::from_utf8_lossy(&message).into_owned();
        shared.history.lock().unwrap().push(text.clone());
        enqueue(shared, text);
    }
}

fn enqueue(shared: &Shared, text: String) {
    let message = QueueMessage {
        id: uuid::Uuid::new_v4().to_string(),
        text,
        dequeue_count: 0,
        inserted: time::OffsetDateTime::now_utc(),
        visible_at: Instant::now(),
    };
    shared.queue.lock().unwrap().push_back(message);
}

/// The HTTP trigger: key check, envelope, invocation, `Outputs`.
async fn http_trigger(
    State(shared): State<Arc<Shared>>,
    OriginalUri(uri): OriginalUri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.webhook_posts.fetch_add(1, Ordering::SeqCst);
    let raw_query = uri.query().unwrap_or_default();
    // The host checks the key itself, decoding the query the ASP.NET way (form encoding, `+` is a space).
    let query: BTreeMap<String, String> = url::form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect();
    if query.get("code") != Some(&shared.function_key) {
        return (StatusCode::UNAUTHORIZED, "").into_response();
    }
    let mut header_list: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in &headers {
        let value = value.to_str().unwrap_or_default().to_owned();
        match header_list.iter_mut().find(|(n, _)| n == name.as_str()) {
            Some((_, values)) => values.push(value),
            None => header_list.push((name.as_str().to_owned(), vec![value])),
        }
    }
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let url = format!("http://{host}{uri}");
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let envelope = functions_host::http_trigger_envelope(
        "function-webhook",
        "req",
        &HttpTriggerRequest { url: &url, method: method.as_str(), headers: header_list, body: &body, content_type },
    );
    let Some(handler) = shared.handler.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the handler is not started").into_response();
    };
    let answer = shared
        .client
        .post(format!("{handler}/function-webhook"))
        .header("X-Azure-Functions-InvocationId", uuid::Uuid::new_v4().to_string())
        .json(&envelope)
        .send()
        .await;
    let Ok(answer) = answer else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if !answer.status().is_success() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let Ok(reply) = answer.json::<Value>().await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    // The queue output is persisted before Graph gets its answer.
    for message in functions_host::queue_output_messages(reply["Outputs"].get("notifications")) {
        let text = String::from_utf8_lossy(&message).into_owned();
        shared.history.lock().unwrap().push(text.clone());
        enqueue(&shared, text);
    }
    let res = &reply["Outputs"]["res"];
    let status = match &res["statusCode"] {
        Value::String(s) => s.parse().unwrap_or(500),
        Value::Number(n) => n.as_u64().unwrap_or(500) as u16,
        _ => 200,
    };
    let mut response = Response::new(axum::body::Body::from(res["body"].as_str().unwrap_or_default().to_owned()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(headers) = res["headers"].as_object() {
        for (name, value) in headers {
            if let (Ok(name), Some(Ok(value))) =
                (HeaderName::try_from(name.as_str()), value.as_str().map(HeaderValue::from_str))
            {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

/// The queue trigger: up to `BATCH_SIZE` messages at once, retries, poison.
async fn queue_worker(shared: Arc<Shared>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(BATCH_SIZE));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let next = {
            let mut queue = shared.queue.lock().unwrap();
            let now = Instant::now();
            let position = queue.iter().position(|m| m.visible_at <= now);
            let message = position.and_then(|p| queue.remove(p));
            if message.is_some() {
                // Counted before the queue lock is released, so an observer never sees an empty queue and no work.
                shared.in_flight.fetch_add(1, Ordering::SeqCst);
            }
            message
        };
        let Some(mut message) = next else {
            drop(permit);
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            message.dequeue_count += 1;
            let (status, reply) = invoke(&shared, &message).await;
            enqueue_outputs(&shared, status, &reply, FOLLOW_UPS);
            shared.invocations.lock().unwrap().push(Invocation {
                message: message.text.clone(),
                dequeue_count: message.dequeue_count,
                status,
                reply,
            });
            if !(200..300).contains(&status) {
                if message.dequeue_count >= MAX_DEQUEUE_COUNT {
                    shared.poison.lock().unwrap().push(message);
                } else {
                    message.visible_at = Instant::now() + VISIBILITY_TIMEOUT;
                    shared.queue.lock().unwrap().push_back(message);
                }
            }
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
    }
}

async fn invoke(shared: &Shared, message: &QueueMessage) -> (u16, Value) {
    let Some(handler) = shared.handler.get() else { return (503, Value::Null) };
    let envelope = functions_host::queue_trigger_envelope(
        "function-notifications",
        "message",
        &message.text,
        &Dequeued { id: &message.id, dequeue_count: message.dequeue_count, inserted: message.inserted },
    );
    let sent = shared
        .client
        .post(format!("{handler}/function-notifications"))
        .header("X-Azure-Functions-InvocationId", uuid::Uuid::new_v4().to_string())
        .json(&envelope)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (500, Value::Null),
    }
}

/// The rules of `functions_host` checked against the host's own tests and source, where they exist.
#[cfg(test)]
mod rules {
    use serde_json::{Value, json};
    use time::OffsetDateTime;

    use crate::functions_host::*;
    #[test]
    fn a_string_is_json_encoded_once_more_as_the_hosts_own_test_asserts() {
        // GetHttpScriptInvocationContextValueTest_String.
        assert_eq!(invocation_context_value(&HostValue::Text("stringTest")), json!("\"stringTest\""));
        let envelope = queue_trigger_envelope(
            "function-notifications",
            "message",
            r#"{"a":1}"#,
            &Dequeued { id: "m1", dequeue_count: 2, inserted: OffsetDateTime::now_utc() },
        );
        assert_eq!(envelope["Data"]["message"], json!(r#""{\"a\":1}""#));
        assert_eq!(envelope["Metadata"]["DequeueCount"], json!("2"));
        assert_eq!(envelope["Metadata"]["Id"], json!("\"m1\""));
        assert!(envelope["Metadata"]["sys"].is_object());
    }

    #[test]
    fn newtonsoft_escapes_what_it_escapes_and_nothing_else() {
        assert_eq!(newtonsoft_string("a\"b\\c\n\u{1}\u{2028}é"), "\"a\\\"b\\\\c\\n\\u0001\\u2028é\"");
    }

    #[test]
    fn an_output_array_is_one_message_per_element_and_base64_is_decoded() {
        let messages = queue_output_messages(Some(&json!(["{\"x\":1}", "{\"y\":2}"])));
        assert_eq!(messages, vec![b"{\"x\":1}".to_vec(), b"{\"y\":2}".to_vec()]);
        assert_eq!(queue_output_messages(Some(&json!("aGVsbG8="))), vec![b"hello".to_vec()]);
        assert_eq!(queue_output_messages(Some(&json!("[\"a\",\"b\"]"))).len(), 2);
        assert!(queue_output_messages(Some(&Value::Null)).is_empty());
        assert_eq!(queue_output_messages(Some(&json!({"k": 1}))), vec![b"{\n  \"k\": 1\n}".to_vec()]);
    }

    #[test]
    fn stderr_lines_are_errors_unless_they_say_warn() {
        assert_eq!(console_log_level(false, "error: anything"), HostLogLevel::Information);
        assert_eq!(console_log_level(true, "WARN retrying"), HostLogLevel::Warning);
        assert_eq!(console_log_level(true, "listening"), HostLogLevel::Error);
    }
}
