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

/// Where one item stands.
struct Pending {
    index: usize,
    attempts: u32,
    waited: Duration,
    due: Instant,
}

impl GraphClient {
    /// Runs `requests` through `$batch`, returning one outcome per request in input order. Each final answer goes
    /// through `finish` as soon as it arrives, so only what the caller keeps of it (a user, a status) outlives its
    /// batch: a run re-reading 100,000 users holds 100,000 users, not 100,000 JSON answers with their headers.
    pub(super) async fn run_batch<T>(
        &self,
        operation: &'static str,
        requests: Vec<BatchRequest>,
        finish: impl Fn(BatchItem) -> T,
    ) -> Vec<Result<T, GraphError>> {
        let options = &self.inner.options;
        let metrics = &self.inner.metrics;
        let mut outcomes: Vec<Option<Result<T, GraphError>>> =
            std::iter::repeat_with(|| None).take(requests.len()).collect();
        let now = Instant::now();
        let mut pending: Vec<Pending> =
            (0..requests.len()).map(|index| Pending { index, attempts: 0, waited: Duration::ZERO, due: now }).collect();

        // Items sent per round. Graph refills its budgets continuously (e.g. 3,000 writes per 150 s = 20 per second)
        // and gives every throttled item the same short Retry-After, so resending everything at once only buys another
        // round of 429s. After a throttled round, send about what the last round got through; grow again while
        // nothing is throttled [throttling: "reduce the frequency of calls"].
        let mut window = requests.len().max(1);
        // Once Graph has throttled this run: the gap to keep between rounds (the last Retry-After seen).
        let mut pace: Option<Duration> = None;
        while !pending.is_empty() {
            let earliest = pending.iter().map(|item| item.due).min().expect("not empty");
            let now = Instant::now();
            if earliest > now {
                let wait = earliest - now;
                debug!(wait_ms = wait.as_millis() as u64, items = pending.len(), "waiting for throttled batch items");
                tokio::time::sleep_until(earliest).await;
                metrics.record_wait(wait);
            }
            let now = Instant::now();
            let (mut due, later): (Vec<Pending>, Vec<Pending>) = pending.into_iter().partition(|item| item.due <= now);
            pending = later;
            if due.len() > window {
                // Oldest first, so no item starves behind retries.
                due.sort_by_key(|item| item.index);
                pending.extend(due.split_off(window));
            }
            let mut throttled_in_round = 0usize;
            let mut done_in_round = 0usize;

            // Answers are handled as they arrive, a bounded number of batches in flight (the client's own limit on
            // concurrent requests, with room for batches waiting out a retry of their own): a round of 100,000
            // items never holds 5,000 answers at once.
            let in_flight = options.max_concurrency.saturating_mul(2).max(1);
            let mut chunks = due.chunks(BATCH_SIZE);
            let mut answers = FuturesUnordered::new();
            loop {
                while answers.len() < in_flight
                    && let Some(chunk) = chunks.next()
                {
                    answers.push(self.send_chunk(operation, &requests, chunk));
                }
                let Some((chunk, answer)) = answers.next().await else { break };
                let mut items = match answer {
                    Ok(items) => items,
                    Err(error) => {
                        for item in chunk {
                            outcomes[item.index] = Some(Err(error.clone()));
                        }
                        continue;
                    }
                };
                for item in chunk {
                    let answer = items.remove(&item.index.to_string());
                    let (status, retry_after, request_id) = match answer {
                        Some(answer) if !is_retryable_status(answer.status) => {
                            outcomes[item.index] = Some(Ok(finish(answer)));
                            done_in_round += 1;
                            continue;
                        }
                        Some(answer) => {
                            bump(&metrics.throttled_responses, 1);
                            throttled_in_round += 1;
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
                    pending.push(Pending {
                        index: item.index,
                        attempts,
                        waited: item.waited + delay,
                        due: Instant::now() + delay,
                    });
                }
            }
            // Graph's Retry-After is about the app's budget, not one item: nothing goes out before the earliest retry.
            if throttled_in_round > 0
                && let Some(resume) = pending.iter().filter(|item| item.attempts > 0).map(|item| item.due).min()
            {
                for item in &mut pending {
                    item.due = item.due.max(resume);
                }
            }
            if throttled_in_round > 0 {
                window = done_in_round.max(1);
                pace = pending
                    .iter()
                    .filter(|item| item.attempts > 0)
                    .map(|item| item.due.saturating_duration_since(now))
                    .min();
            } else if let Some(gap) = pace {
                // Paced: grow additively and keep the gap, probing the budget instead of overrunning it again.
                window = (window + window / 4 + 1).min(requests.len().max(1));
                let next = Instant::now() + gap;
                for item in &mut pending {
                    item.due = item.due.max(next);
                }
            } else {
                window = window.saturating_mul(2).min(requests.len().max(1));
            }
        }

        outcomes.into_iter().map(|outcome| outcome.expect("every item ends with an outcome")).collect()
    }

    /// [`Self::send_batch`], answered with its chunk.
    async fn send_chunk<'a>(
        &self,
        operation: &'static str,
        requests: &[BatchRequest],
        chunk: &'a [Pending],
    ) -> (&'a [Pending], Result<HashMap<String, BatchItem>, GraphError>) {
        (chunk, self.send_batch(operation, requests, chunk).await)
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
