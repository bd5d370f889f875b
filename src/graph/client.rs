//! [`GraphClient`]: one tenant's Microsoft Graph transport: one request path that owns authentication, retries,
//! throttling, concurrency, timeouts and metrics, and paging. The calls on top of it live with their resource:
//! users and members in `users.rs` (through `$batch`, `batch.rs`), delta in `delta.rs`, subscriptions in
//! `subscriptions.rs`, Intune in `intune_beta.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use azure_core::credentials::{Secret, TokenCredential};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, header::HeaderMap};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tracing::{debug, warn};
use url::Url;

use super::{
    CloudEndpoints, GraphError, GraphMetrics, TenantCredential, build_credential,
    credentials::http_client,
    metrics::{Metrics, bump},
    pacing::{Budget, Pacer, PacingFigures},
    page::Page,
    retry::{backoff, is_retryable_status, parse_retry_after},
};
use crate::domain::TenantId;

/// Tuning of a [`GraphClient`].
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// Attempts per request (or per `$batch` item), the first included.
    pub max_attempts: u32,
    /// The most one request (or item) may spend waiting between attempts; past it the request fails as throttled.
    pub max_total_wait: Duration,
    /// Timeout of one HTTP attempt, body included.
    pub request_timeout: Duration,
    /// Requests in flight at once, `$batch` POSTs included.
    pub max_concurrency: usize,
    /// The first backoff ceiling when Graph gives no `Retry-After`; doubles per attempt.
    pub initial_backoff: Duration,
    /// The largest single backoff wait.
    pub max_backoff: Duration,
    /// An extra trusted root CA in PEM (the emulator's test CA, or a private cloud's).
    pub extra_ca_pem: Option<String>,
    /// `v1.0` (or `beta`).
    pub api_version: String,
    /// The app's write budget in the tenant, paced to before Graph throttles (`GRAPH_WRITE_BUDGET`).
    pub write_budget: Budget,
    /// The app's resource-unit budget in the tenant.
    pub resource_unit_budget: Budget,
}

impl Default for GraphOptions {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            max_total_wait: Duration::from_secs(5 * 60),
            request_timeout: Duration::from_secs(60),
            max_concurrency: 8,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            extra_ca_pem: None,
            api_version: "v1.0".to_owned(),
            write_budget: Budget::GRAPH_WRITES,
            resource_unit_budget: Budget::GRAPH_RESOURCE_UNITS,
        }
    }
}

/// The Microsoft Graph client of one tenant. Cheap to clone; clones share connections, limits and metrics.
#[derive(Clone)]
pub struct GraphClient {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) tenant: TenantId,
    /// The graph root, e.g. `https://graph.microsoft.com/`.
    base: Url,
    /// The version root, e.g. `https://graph.microsoft.com/v1.0/`.
    pub(super) root: Url,
    scope: String,
    credential: Arc<dyn TokenCredential>,
    credential_kind: &'static str,
    http: reqwest::Client,
    pub(super) options: GraphOptions,
    permits: Semaphore,
    pub(super) metrics: Metrics,
    /// When a `$batch` chunk may go: shared by every run of the process, as Graph's budget is.
    pub(super) pacer: Pacer,
    /// Graph's clock minus ours, in milliseconds, from the last `Date` header (0 until one is seen).
    clock_offset_ms: AtomicI64,
    clock_known: AtomicBool,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("tenant", &self.inner.tenant)
            .field("root", &self.inner.root.as_str())
            .field("credential", &self.inner.credential_kind)
            .finish_non_exhaustive()
    }
}

/// A response read in full.
pub(super) struct GraphResponse {
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

/// One request to send, possibly several times.
pub(super) struct GraphRequest {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) body: Option<Vec<u8>>,
    /// Send `ConsistencyLevel: eventual`, needed by `$count`, casts and `$filter` on collections [aad-advanced-queries].
    pub(super) eventual: bool,
}

enum AttemptError {
    Fatal(GraphError),
    Transport(reqwest::Error),
}

/// Characters left as they are in query values; everything else is percent-encoded (`+` too: it means a space to
/// some servers, and certificateUserIds values may contain it).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b',')
    .remove(b'/')
    .remove(b':')
    .remove(b'(')
    .remove(b')')
    .remove(b'$')
    .remove(b'@');

impl GraphClient {
    /// A client for `tenant`'s Graph at `base` (e.g. `https://graph.microsoft.com`), asking `credential` for tokens
    /// with `scope` (e.g. `https://graph.microsoft.com/.default`).
    pub fn new(
        tenant: TenantId,
        base: Url,
        scope: String,
        credential: Arc<dyn TokenCredential>,
        options: GraphOptions,
    ) -> Result<Self, GraphError> {
        Self::with_credential_kind(tenant, base, scope, credential, "its credential", options)
    }

    /// Builds the tenant's credential with [`build_credential`] (trusting `options.extra_ca_pem`) and the client on
    /// top; errors then name the credential kind.
    pub fn connect(
        tenant: TenantId,
        credential: &TenantCredential,
        cloud: &CloudEndpoints,
        options: GraphOptions,
    ) -> Result<Self, GraphError> {
        let token_credential = build_credential(&tenant, credential, cloud, options.extra_ca_pem.as_deref())?;
        Self::with_credential_kind(
            tenant,
            cloud.graph.clone(),
            cloud.graph_scope.clone(),
            token_credential,
            credential.kind(),
            options,
        )
    }

    fn with_credential_kind(
        tenant: TenantId,
        base: Url,
        scope: String,
        credential: Arc<dyn TokenCredential>,
        credential_kind: &'static str,
        options: GraphOptions,
    ) -> Result<Self, GraphError> {
        let invalid = |what: String| Err(GraphError::Configuration(what));
        if options.max_attempts == 0 {
            return invalid("max_attempts must be at least 1".to_owned());
        }
        if options.max_concurrency == 0 {
            return invalid("max_concurrency must be at least 1".to_owned());
        }
        let version = options.api_version.trim_matches('/');
        if version.is_empty() || version.contains(['/', '?', '#']) {
            return invalid(format!("api_version {:?} is not a Graph version such as v1.0", options.api_version));
        }
        if base.cannot_be_a_base() || !matches!(base.scheme(), "https" | "http") {
            return invalid(format!("the Graph endpoint {base} is not an http(s) URL"));
        }
        let mut base = base;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);
        let root = base
            .join(&format!("{version}/"))
            .map_err(|error| GraphError::Configuration(format!("bad Graph endpoint {base}: {error}")))?;
        let http = http_client(options.extra_ca_pem.as_deref(), Some(options.request_timeout))?;
        let permits = Semaphore::new(options.max_concurrency);
        let pacer = Pacer::new(options.write_budget, options.resource_unit_budget);
        Ok(Self {
            inner: Arc::new(Inner {
                tenant,
                base,
                root,
                scope,
                credential,
                credential_kind,
                http,
                options,
                permits,
                metrics: Metrics::default(),
                pacer,
                clock_offset_ms: AtomicI64::new(0),
                clock_known: AtomicBool::new(false),
            }),
        })
    }

    pub fn tenant(&self) -> &TenantId {
        &self.inner.tenant
    }

    /// What this client has sent so far and how Graph pushed back.
    pub fn metrics(&self) -> GraphMetrics {
        self.inner.metrics.snapshot()
    }

    /// The write budget this client paces to.
    pub fn write_budget(&self) -> Budget {
        self.inner.options.write_budget
    }

    /// What the write pacing did so far (for the run's throttling summary).
    pub fn pacing(&self) -> PacingFigures {
        self.inner.pacer.figures()
    }

    /// Graph's time: our clock corrected by the `Date` header of Graph's last answer. Subscription expirations are
    /// checked against Graph's clock (41,760 minutes from *its* now), so they are computed from this.
    pub fn graph_now(&self) -> OffsetDateTime {
        let offset = self.inner.clock_offset_ms.load(Ordering::Relaxed);
        OffsetDateTime::now_utc() + time::Duration::milliseconds(offset)
    }

    /// Whether [`Self::graph_now`] has seen Graph's clock yet (else it is ours).
    pub fn knows_graph_time(&self) -> bool {
        self.inner.clock_known.load(Ordering::Relaxed)
    }

    /// `{root}{path}?{query}` with query values percent-encoded.
    pub(super) fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, GraphError> {
        with_query(format!("{}{path}", self.inner.root), query)
    }

    /// Follows `@odata.nextLink` (absolute, used as-is [group-list-members]) and returns every `value` item.
    pub(super) async fn get_all_pages(&self, operation: &'static str, first: Url) -> Result<Vec<Value>, GraphError> {
        let mut items = Vec::new();
        self.for_each_page::<Value>(operation, first, |page, _| items.extend(page)).await?;
        Ok(items)
    }

    /// Follows `@odata.nextLink` from `first`, handing each page's items (read as `T`, straight from the body) and
    /// the first page's `@odata.count` to `each`, then dropping the page.
    pub(super) async fn for_each_page<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        first: Url,
        mut each: impl FnMut(Vec<T>, Option<u64>),
    ) -> Result<(), GraphError> {
        let mut next = Some(first);
        let mut first_page = true;
        while let Some(url) = next.take() {
            let request = GraphRequest { method: Method::GET, url: url.clone(), body: None, eventual: true };
            let response = self.execute(operation, &request).await?;
            let page: Page<T> = serde_json::from_slice(&response.body)
                .map_err(|error| GraphError::Decode { operation, detail: format!("the page is not JSON: {error}") })?;
            drop(response);
            let Some(values) = page.value else {
                return Err(GraphError::Decode { operation, detail: "the page has no \"value\" array".to_owned() });
            };
            if page.next_link_malformed {
                return Err(GraphError::Decode {
                    operation,
                    detail: "the page's @odata.nextLink is not a URL string: the rest of the collection cannot be read"
                        .to_owned(),
                });
            }
            each(values, if first_page { page.count } else { None });
            first_page = false;
            if let Some(link) = page.next_link {
                let link = self.next_link(operation, &link)?;
                if link == url {
                    return Err(GraphError::Decode {
                        operation,
                        detail: "@odata.nextLink points to itself".to_owned(),
                    });
                }
                next = Some(link);
            }
        }
        Ok(())
    }

    /// Whether `url` is on the Graph host this client was given (the only place its token is sent).
    fn is_graph_host(&self, url: &Url) -> bool {
        let base = &self.inner.base;
        url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default()
    }

    /// `{graph root}beta/{path}?{query}`: only [`super::intune_beta`] calls beta.
    pub(super) fn beta_url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, GraphError> {
        let beta = self
            .inner
            .base
            .join("beta/")
            .map_err(|error| GraphError::Configuration(format!("bad Graph endpoint: {error}")))?;
        with_query(format!("{beta}{path}"), query)
    }

    /// A nextLink is followed only on the Graph host this client was given: it carries this tenant's token.
    pub(super) fn next_link(&self, operation: &'static str, link: &str) -> Result<Url, GraphError> {
        let url = Url::parse(link).map_err(|error| GraphError::Decode {
            operation,
            detail: format!("@odata.nextLink {link:?} is not an absolute URL: {error}"),
        })?;
        if !self.is_graph_host(&url) {
            return Err(GraphError::Decode {
                operation,
                detail: format!("@odata.nextLink leaves the Graph endpoint ({link}); not sending the token there"),
            });
        }
        Ok(url)
    }

    /// `GET …/$count`: a bare number in `text/plain` [aad-advanced-queries].
    pub(super) async fn get_count(&self, operation: &'static str, url: Url) -> Result<u64, GraphError> {
        let request = GraphRequest { method: Method::GET, url, body: None, eventual: true };
        let response = self.execute(operation, &request).await?;
        let text = String::from_utf8_lossy(&response.body);
        let text = text.trim_start_matches('\u{feff}').trim();
        text.parse::<u64>()
            .ok()
            .or_else(|| serde_json::from_str::<Value>(text).ok().and_then(|value| value.as_u64()))
            .ok_or_else(|| GraphError::Decode {
                operation,
                detail: format!("the count {:?} is not a number", text.chars().take(100).collect::<String>()),
            })
    }

    /// Sends a request until it succeeds, fails for good, or runs out of attempts or waiting time. 429/503/504 and
    /// broken connections are retried after `Retry-After` or a jittered backoff [throttling].
    pub(super) async fn execute(
        &self,
        operation: &'static str,
        request: &GraphRequest,
    ) -> Result<GraphResponse, GraphError> {
        let options = &self.inner.options;
        let metrics = &self.inner.metrics;
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if request.method == Method::GET {
                bump(&metrics.reads, 1);
            }
            let (failure, delay) = match self.attempt(request).await {
                Ok(response) if (200..300).contains(&response.status) => return Ok(response),
                Ok(response) if is_retryable_status(response.status) => {
                    bump(&metrics.throttled_responses, 1);
                    let retry_after =
                        header(&response.headers, "retry-after").and_then(|value| parse_retry_after(&value));
                    if response.status == 429
                        && let Some(retry_after) = retry_after
                    {
                        // The Retry-After is about the app's budget in the tenant, not this one request.
                        self.inner.pacer.stop_for(retry_after);
                    }
                    let delay =
                        retry_after.unwrap_or_else(|| backoff(attempt, options.initial_backoff, options.max_backoff));
                    let failure = GraphError::Throttled {
                        operation,
                        attempts: attempt,
                        waited,
                        status: response.status,
                        request_id: header(&response.headers, "request-id"),
                    };
                    (failure, delay)
                }
                Ok(response) => {
                    return Err(GraphError::from_response(
                        operation,
                        response.status,
                        header(&response.headers, "request-id"),
                        &response.body,
                    ));
                }
                Err(AttemptError::Fatal(error)) => return Err(error),
                Err(AttemptError::Transport(error)) => {
                    bump(&metrics.transport_errors, 1);
                    let retryable = error.is_connect() || error.is_timeout() || error.is_request() || error.is_body();
                    let failure = GraphError::transport(operation, error);
                    if !retryable {
                        return Err(failure);
                    }
                    (failure, backoff(attempt, options.initial_backoff, options.max_backoff))
                }
            };
            if attempt >= options.max_attempts || waited + delay > options.max_total_wait {
                warn!(%failure, attempt, "giving up");
                return Err(failure);
            }
            debug!(attempt, delay_ms = delay.as_millis() as u64, %failure, "retrying");
            bump(&metrics.retries, 1);
            tokio::time::sleep(delay).await;
            metrics.record_wait(delay);
            waited += delay;
        }
    }

    /// One attempt: a concurrency permit, a token (cached by the credential), the request, the whole body.
    async fn attempt(&self, request: &GraphRequest) -> Result<GraphResponse, AttemptError> {
        let inner = &self.inner;
        let _permit = inner.permits.acquire().await.expect("the semaphore is never closed");
        // The token goes to this client's Graph host only (a CA certificate is downloaded from a public URL).
        let on_graph = self.is_graph_host(&request.url);
        let mut builder = inner
            .http
            .request(request.method.clone(), request.url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if on_graph {
            let token = self.token().await.map_err(AttemptError::Fatal)?;
            builder = builder.bearer_auth(token.secret());
        }
        if request.eventual {
            builder = builder.header("ConsistencyLevel", "eventual");
        }
        if let Some(body) = &request.body {
            builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
        }
        let response = builder.send().await.map_err(AttemptError::Transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        self.observe_throttle_headers(headers.iter().map(|(name, value)| (name.as_str(), value.to_str().ok())));
        if !on_graph {
            let body = response.bytes().await.map_err(AttemptError::Transport)?.to_vec();
            return Ok(GraphResponse { status, headers, body });
        }
        if let Some(date) = headers.get(reqwest::header::DATE).and_then(|v| v.to_str().ok()).and_then(parse_http_date) {
            let offset = (date - OffsetDateTime::now_utc()).whole_milliseconds();
            inner.clock_offset_ms.store(i64::try_from(offset).unwrap_or_default(), Ordering::Relaxed);
            inner.clock_known.store(true, Ordering::Relaxed);
        }
        let body = response.bytes().await.map_err(AttemptError::Transport)?.to_vec();
        Ok(GraphResponse { status, headers, body })
    }

    async fn token(&self) -> Result<Secret, GraphError> {
        let inner = &self.inner;
        let token = inner
            .credential
            .get_token(&[inner.scope.as_str()], None)
            .await
            .map_err(|error| GraphError::credential(&inner.tenant, inner.credential_kind, error))?;
        inner.metrics.record_token(token.expires_on);
        Ok(token.token)
    }

    /// Records `x-ms-resource-unit` and `x-ms-throttle-limit-percentage`, and logs every `x-ms-throttle-*` header at
    /// warn: they tell an operator the run is near its budget [throttling-limits].
    pub(super) fn observe_throttle_headers<'a>(&self, headers: impl Iterator<Item = (&'a str, Option<&'a str>)>) {
        let mut throttle = Vec::new();
        let mut limit_percentage = None;
        let mut resource_unit = None;
        for (name, value) in headers {
            let Some(value) = value else { continue };
            let name = name.to_ascii_lowercase();
            if name == "x-ms-resource-unit" {
                resource_unit = value.trim().parse::<u64>().ok();
            } else if name.starts_with("x-ms-throttle-") {
                if name == "x-ms-throttle-limit-percentage" {
                    limit_percentage = value.trim().parse::<f64>().ok().filter(|p| p.is_finite());
                }
                throttle.push(format!("{name}={value}"));
            }
        }
        // One line per answer would be thousands per first sync: the run's summary line carries the figures.
        if !throttle.is_empty() {
            debug!(headers = %throttle.join(", "), "Microsoft Graph reports this app is near or over a throttling limit");
        }
        if limit_percentage.is_some() || resource_unit.is_some() {
            self.inner.metrics.record_throttle_headers(limit_percentage, resource_unit);
        }
    }
}

/// `text` (a URL without query) with `query` values percent-encoded.
fn with_query(mut text: String, query: &[(&str, &str)]) -> Result<Url, GraphError> {
    for (index, (name, value)) in query.iter().enumerate() {
        text.push(if index == 0 { '?' } else { '&' });
        text.push_str(name);
        text.push('=');
        text.push_str(&encode(value));
    }
    Url::parse(&text).map_err(|error| GraphError::Configuration(format!("bad request URL {text}: {error}")))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
}

/// An HTTP `Date` (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7).
fn parse_http_date(text: &str) -> Option<OffsetDateTime> {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text.trim(), FORMAT).ok().map(time::PrimitiveDateTime::assume_utc)
}

pub(super) fn encode(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::credentials::{AccessToken, TokenRequestOptions};

    #[derive(Debug)]
    struct NoToken;

    #[async_trait::async_trait]
    impl TokenCredential for NoToken {
        async fn get_token(&self, _: &[&str], _: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
            Err(azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, "no token in unit tests"))
        }
    }

    fn client(base: &str) -> GraphClient {
        let tenant = TenantId::parse("contoso.onmicrosoft.com").unwrap();
        GraphClient::new(tenant, Url::parse(base).unwrap(), "s/.default".into(), Arc::new(NoToken), Default::default())
            .unwrap()
    }

    #[test]
    fn query_values_are_percent_encoded_including_plus_quote_and_space() {
        let client = client("https://graph.microsoft.com");
        let url = client.url("users", &[("$filter", "x eq 'a+b c'"), ("$select", "id,mail")]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://graph.microsoft.com/v1.0/users?$filter=x%20eq%20%27a%2Bb%20c%27&$select=id,mail"
        );
    }

    #[test]
    fn http_dates_parse_as_utc() {
        let date = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(date.unix_timestamp(), 784_111_777);
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn a_graph_endpoint_with_a_path_keeps_it() {
        let client = client("https://proxy.example/graph");
        assert_eq!(client.url("$batch", &[]).unwrap().as_str(), "https://proxy.example/graph/v1.0/$batch");
    }

    #[test]
    fn next_links_are_followed_only_on_the_graph_host() {
        let client = client("https://graph.microsoft.com/");
        let same = "https://graph.microsoft.com/v1.0/users?$skiptoken=abc";
        assert_eq!(client.next_link("t", same).unwrap().as_str(), same);
        for elsewhere in ["https://evil.example/v1.0/users", "http://graph.microsoft.com/v1.0/users", "/v1.0/users"] {
            assert!(client.next_link("t", elsewhere).is_err(), "{elsewhere}");
        }
    }

    #[test]
    fn nonsense_options_are_refused() {
        let tenant = TenantId::parse("contoso.onmicrosoft.com").unwrap();
        let base = Url::parse("https://graph.microsoft.com").unwrap();
        for options in [
            GraphOptions { max_attempts: 0, ..Default::default() },
            GraphOptions { max_concurrency: 0, ..Default::default() },
            GraphOptions { api_version: "v1.0/users".into(), ..Default::default() },
        ] {
            let built = GraphClient::new(tenant.clone(), base.clone(), "s".into(), Arc::new(NoToken), options);
            assert!(matches!(built, Err(GraphError::Configuration(_))));
        }
    }
}
