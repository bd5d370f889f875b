//! JSON batching [json-batching]: up to 20 requests per `POST /$batch`, each answered (in any order) with its own
//! status. The outer 200 says nothing about the items, and each item is throttled on its own, so items answered
//! 429/503/504 wait for their own `Retry-After` and go out again, alone or with other due items, in a later batch.

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use reqwest::Method;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{
    GraphError,
    client::{GraphClient, GraphRequest},
    metrics::bump,
    pacing::{Answered, Grant, Reported},
    retry::{backoff, is_retryable_status, parse_retry_after},
};

/// At most 20 requests per batch [json-batching].
pub(super) const BATCH_SIZE: usize = 20;

/// One request of a batch, its URL relative to the version root (`/users/{id}`).
#[derive(Debug, Clone)]
pub(super) struct BatchRequest {
    method: &'static str,
    url: String,
    body: Option<BatchBody>,
}

/// A request body, kept in its compact form until its batch is serialised: a first sync holds one per user, and a
/// `serde_json::Value` tree per body weighs ten times the values it carries.
#[derive(Debug, Clone)]
pub(super) enum BatchBody {
    /// `{"authorizationInfo": {"certificateUserIds": [...]}}` [user-update].
    CertificateUserIds(Vec<String>),
}

impl Serialize for BatchBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct AuthorizationInfo<'a> {
            certificate_user_ids: &'a [String],
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Patch<'a> {
            authorization_info: AuthorizationInfo<'a>,
        }
        match self {
            BatchBody::CertificateUserIds(values) => {
                Patch { authorization_info: AuthorizationInfo { certificate_user_ids: values } }.serialize(serializer)
            }
        }
    }
}

impl BatchRequest {
    pub(super) fn get(url: String) -> Self {
        Self { method: "GET", url, body: None }
    }

    pub(super) fn patch(url: String, body: BatchBody) -> Self {
        Self { method: "PATCH", url, body: Some(body) }
    }
}

/// The wire form of a batch item. A request with a body must say its `Content-Type` [json-batching].
#[derive(Serialize)]
struct WireRequest<'a> {
    id: String,
    method: &'static str,
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a BatchBody>,
}

/// One item's final answer (never 429/503/504: those are retried or become [`GraphError::Throttled`]).
#[derive(Debug, Clone)]
pub(super) struct BatchItem {
    pub(super) status: u16,
    pub(super) headers: Map<String, Value>,
    pub(super) body: Option<Value>,
}

impl BatchItem {
    fn header(&self, name: &str) -> Option<String> {
        header_in(&self.headers, name)
    }

    /// The item's error, with Graph's code, message and request-id.
    pub(super) fn into_error(self, operation: &'static str) -> GraphError {
        let raw = self.body.as_ref().map(Value::to_string).unwrap_or_default();
        GraphError::from_json_response(
            operation,
            self.status,
            self.header("request-id"),
            self.body.as_ref(),
            raw.as_bytes(),
        )
    }
}

fn header_in(headers: &Map<String, Value>, name: &str) -> Option<String> {
    headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).and_then(|(_, value)| match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    })
}

/// Budget for up to one chunk of writes, taken before the users are re-read so that the re-read is the last thing
/// before the write (see `sync::apply`). Unused, it goes back to the pacer when dropped.
#[must_use]
pub struct WriteReservation {
    client: GraphClient,
    grant: Option<Grant>,
}

impl WriteReservation {
    /// How many writes may go on it (1 when the pacer is probing whether the budget is back).
    pub fn writes(&self) -> usize {
        self.grant.map_or(0, |grant| grant.writes)
    }

    fn take(&mut self) -> Option<Grant> {
        self.grant.take()
    }
}

impl Drop for WriteReservation {
    fn drop(&mut self) {
        if let Some(grant) = self.grant.take() {
            self.client.inner.pacer.unanswered(grant);
        }
    }
}

impl GraphClient {
    /// Waits until the app's budget allows a chunk of up to `writes` writes (at most 20 [json-batching]), and
    /// reserves it.
    pub async fn reserve_writes(&self, writes: usize) -> WriteReservation {
        let writes = writes.clamp(1, BATCH_SIZE);
        let asked = Instant::now();
        let grant = self.inner.pacer.acquire(writes, writes).await;
        self.inner.metrics.record_paced_wait(asked.elapsed());
        WriteReservation { client: self.clone(), grant: Some(grant) }
    }
}

/// Where one item stands.
struct Pending {
    index: usize,
    attempts: u32,
    waited: Duration,
    due: Instant,
}

/// A chunk's answer, with the items the pacer let go and those it held back for a later chunk.
struct ChunkAnswer {
    sent: Vec<Pending>,
    held: Vec<Pending>,
    answer: Result<HashMap<String, BatchItem>, GraphError>,
}

impl GraphClient {
    /// Runs `requests` through `$batch`, returning one outcome per request in input order. Each final answer goes
    /// through `finish` as soon as it arrives, so only what the caller keeps of it (a user, a status) outlives its
    /// batch: a run re-reading 100,000 users holds 100,000 users, not 100,000 JSON answers with their headers.
    ///
    /// Chunks of 20 go out as the client's [`Pacer`](super::pacing) allows, a bounded number in flight (the client's
    /// own limit on concurrent requests, with room for chunks waiting on the pacer). Items answered 429/503/504 go
    /// out again after their own `Retry-After`; a 429 also stops every other chunk for that long [throttling].
    pub(super) async fn run_batch<T>(
        &self,
        operation: &'static str,
        requests: Vec<BatchRequest>,
        finish: impl Fn(BatchItem) -> T,
    ) -> Vec<Result<T, GraphError>> {
        self.run_batch_reserved(operation, requests, None, finish).await
    }

    /// [`Self::run_batch`], its first chunk sent on budget reserved beforehand ([`WriteReservation`]).
    pub(super) async fn run_batch_reserved<T>(
        &self,
        operation: &'static str,
        requests: Vec<BatchRequest>,
        mut reserved: Option<WriteReservation>,
        finish: impl Fn(BatchItem) -> T,
    ) -> Vec<Result<T, GraphError>> {
        let options = &self.inner.options;
        let metrics = &self.inner.metrics;
        let mut outcomes: Vec<Option<Result<T, GraphError>>> =
            std::iter::repeat_with(|| None).take(requests.len()).collect();
        let now = Instant::now();
        // Items never sent, in input order, and items waiting to be sent again, each with its own due time.
        let mut fresh: std::collections::VecDeque<Pending> =
            (0..requests.len()).map(|index| Pending { index, attempts: 0, waited: Duration::ZERO, due: now }).collect();
        let mut again: Vec<Pending> = Vec::new();
        let in_flight = options.max_concurrency.saturating_mul(2).max(1);
        let mut answers = FuturesUnordered::new();
        loop {
            let now = Instant::now();
            while answers.len() < in_flight {
                // Retries first, oldest first, so no item starves behind new ones.
                again.sort_by_key(|item| std::cmp::Reverse(item.index));
                let mut chunk = Vec::with_capacity(BATCH_SIZE);
                let mut later = Vec::new();
                while chunk.len() < BATCH_SIZE
                    && let Some(item) = again.pop()
                {
                    if item.due <= now { chunk.push(item) } else { later.push(item) }
                }
                again.extend(later);
                while chunk.len() < BATCH_SIZE
                    && let Some(item) = fresh.pop_front()
                {
                    chunk.push(item);
                }
                if chunk.is_empty() {
                    break;
                }
                let grant = reserved.as_mut().and_then(WriteReservation::take);
                answers.push(self.paced_chunk(operation, &requests, chunk, grant));
            }
            let next_due = again.iter().map(|item| item.due).min();
            let answer = match (answers.is_empty(), next_due) {
                (true, None) => break,
                (true, Some(due)) => {
                    let wait = due.saturating_duration_since(Instant::now());
                    debug!(wait_ms = wait.as_millis() as u64, items = again.len(), "waiting for throttled batch items");
                    tokio::time::sleep_until(due).await;
                    metrics.record_wait(wait);
                    continue;
                }
                (false, None) => answers.next().await,
                (false, Some(due)) => tokio::select! {
                    answer = answers.next() => answer,
                    () = tokio::time::sleep_until(due), if answers.len() < in_flight => continue,
                },
            };
            let Some(ChunkAnswer { sent, held, answer }) = answer else { continue };
            // Held back by the pacer (a probe went instead): they lead the next chunk.
            for item in held.into_iter().rev() {
                fresh.push_front(item);
            }
            let mut items = match answer {
                Ok(items) => items,
                Err(error) => {
                    for item in sent {
                        outcomes[item.index] = Some(Err(error.clone()));
                    }
                    continue;
                }
            };
            for item in sent {
                let answer = items.remove(&item.index.to_string());
                let (status, retry_after, request_id) = match answer {
                    Some(answer) if !is_retryable_status(answer.status) => {
                        outcomes[item.index] = Some(Ok(finish(answer)));
                        continue;
                    }
                    Some(answer) => {
                        bump(&metrics.throttled_responses, 1);
                        let retry_after = answer.header("retry-after").and_then(|value| parse_retry_after(&value));
                        (answer.status, retry_after, answer.header("request-id"))
                    }
                    // An item missing from the response: treat it as not done and send it again.
                    None => {
                        warn!(item = item.index, "the $batch response left an item out; sending it again");
                        (0, None, None)
                    }
                };
                let attempts = item.attempts + 1;
                let delay =
                    retry_after.unwrap_or_else(|| backoff(attempts, options.initial_backoff, options.max_backoff));
                // A 429 is Graph pacing us: keep going until the wait budget is spent ("continue to use the
                // recommended Retry-After delay and retry the request until it succeeds" [throttling]). Other
                // failures (503, 504, missing items) are bounded by attempts too.
                let out_of_attempts = status != 429 && attempts >= options.max_attempts;
                if out_of_attempts || item.waited + delay > options.max_total_wait {
                    outcomes[item.index] = Some(Err(GraphError::Throttled {
                        operation,
                        attempts,
                        waited: item.waited,
                        status,
                        request_id,
                    }));
                    continue;
                }
                bump(&metrics.retries, 1);
                again.push(Pending {
                    index: item.index,
                    attempts,
                    waited: item.waited + delay,
                    due: Instant::now() + delay,
                });
            }
        }

        outcomes.into_iter().map(|outcome| outcome.expect("every item ends with an outcome")).collect()
    }

    /// Waits for the pacer, sends what it lets go as one `$batch`, and tells it what Graph answered.
    async fn paced_chunk(
        &self,
        operation: &'static str,
        requests: &[BatchRequest],
        mut chunk: Vec<Pending>,
        reserved: Option<Grant>,
    ) -> ChunkAnswer {
        let writes = chunk.iter().filter(|item| requests[item.index].body.is_some()).count();
        let grant = match reserved {
            Some(grant) => grant,
            None => {
                let asked = Instant::now();
                let grant = self.inner.pacer.acquire(chunk.len(), writes).await;
                self.inner.metrics.record_paced_wait(asked.elapsed());
                grant
            }
        };
        let held = chunk.split_off(grant.items.min(chunk.len()));
        let answer = self.send_batch(operation, requests, &chunk).await;
        match &answer {
            Ok(items) => {
                let mut answered = Answered::default();
                for (id, item) in items {
                    if item.status == 429 {
                        // No Retry-After: the client's first backoff, as for any retry without one.
                        let retry_after = item
                            .header("retry-after")
                            .and_then(|value| parse_retry_after(&value))
                            .unwrap_or(self.inner.options.initial_backoff);
                        answered.throttled = Some(answered.throttled.map_or(retry_after, |r| r.max(retry_after)));
                    } else if !is_retryable_status(item.status) {
                        let is_write =
                            id.parse::<usize>().ok().and_then(|i| requests.get(i)).is_some_and(|r| r.body.is_some());
                        answered.accepted_writes += usize::from(is_write);
                        let used =
                            item.header("x-ms-throttle-limit-percentage").and_then(|value| Reported::parse(&value));
                        if let Some(used) = used {
                            answered.limit_percentage = Some(answered.limit_percentage.map_or(used, |p| p.max(used)));
                        }
                    }
                }
                self.inner.pacer.answered(grant, answered);
            }
            Err(_) => self.inner.pacer.unanswered(grant),
        }
        ChunkAnswer { sent: chunk, held, answer }
    }

    /// One `POST /$batch` (itself retried as a whole by [`GraphClient::execute`]); answers keyed by item id.
    async fn send_batch(
        &self,
        operation: &'static str,
        requests: &[BatchRequest],
        chunk: &[Pending],
    ) -> Result<HashMap<String, BatchItem>, GraphError> {
        let metrics = &self.inner.metrics;
        let wire: Vec<WireRequest<'_>> = chunk
            .iter()
            .map(|item| {
                let request = &requests[item.index];
                let headers = request.body.as_ref().map(|_| {
                    let mut headers = Map::new();
                    headers.insert("Content-Type".to_owned(), Value::from("application/json"));
                    headers
                });
                WireRequest {
                    id: item.index.to_string(),
                    method: request.method,
                    url: &request.url,
                    headers,
                    body: request.body.as_ref(),
                }
            })
            .collect();
        let writes = wire.iter().filter(|item| item.method != "GET").count() as u64;
        bump(&metrics.batches, 1);
        bump(&metrics.batch_items, wire.len() as u64);
        bump(&metrics.reads, wire.len() as u64 - writes);
        bump(&metrics.writes, writes);

        let body = serde_json::to_vec(&serde_json::json!({ "requests": wire })).expect("serialisable");
        let request =
            GraphRequest { method: Method::POST, url: self.url("$batch", &[])?, body: Some(body), eventual: false };
        let response = self.execute(operation, &request).await?;
        let decode = |detail: String| GraphError::Decode { operation, detail };
        let parsed: Value = serde_json::from_slice(&response.body)
            .map_err(|error| decode(format!("the $batch response is not JSON: {error}")))?;
        let answers = parsed
            .get("responses")
            .and_then(Value::as_array)
            .ok_or_else(|| decode("the $batch response has no \"responses\" array".to_owned()))?;

        let mut items = HashMap::with_capacity(answers.len());
        for answer in answers {
            let id = match answer.get("id") {
                Some(Value::String(id)) => id.clone(),
                Some(Value::Number(id)) => id.to_string(),
                _ => continue,
            };
            let Some(status) = answer.get("status").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok()) else {
                continue;
            };
            let headers = answer.get("headers").and_then(Value::as_object).cloned().unwrap_or_default();
            self.observe_throttle_headers(headers.iter().map(|(name, value)| (name.as_str(), value.as_str())));
            let body = answer.get("body").filter(|body| !body.is_null()).cloned();
            items.insert(id, BatchItem { status, headers, body });
        }
        Ok(items)
    }
}
