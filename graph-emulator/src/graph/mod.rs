//! Microsoft Graph under `/v1.0/` and `/beta/`: authentication, faults, throttling, permissions, then the route.

mod batch;
mod cloud_pki;
pub(crate) mod delta;
pub(crate) mod error;
mod members;
pub(crate) mod query;
pub(crate) mod subscriptions;
mod users;
mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use url::Url;

use crate::directory::{ObjectKind, lock};
use crate::jwt::Claims;
use crate::model::{RequestKind, RequestRecord};
use crate::options::FaultKind;
use crate::state::{AppState, BaseUrl};
use crate::throttle::Cost;
use error::GraphError;
use query::Query;

/// Audiences Graph accepts. [auth-v2-service]
pub(crate) const GRAPH_AUDIENCES: [&str; 2] = ["https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000"];

/// One Graph request, from the wire or from a `$batch` item.
#[derive(Debug, Clone)]
pub(crate) struct GraphRequest {
    pub method: Method,
    /// `v1.0` or `beta`.
    pub version: String,
    /// The path after the version, without leading slash, percent-decoded.
    pub path: String,
    pub raw_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub base: Url,
    pub via_batch: bool,
}

impl GraphRequest {
    /// Path and query as logged: `/v1.0/groups/…?…`.
    fn logged_path(&self) -> String {
        if self.raw_query.is_empty() {
            format!("/{}/{}", self.version, self.path)
        } else {
            format!("/{}/{}?{}", self.version, self.path, self.raw_query)
        }
    }

    /// The absolute URL of this path with a given query: the shape of `@odata.nextLink`.
    pub(crate) fn link(&self, query: &str) -> String {
        format!("{}{}/{}?{}", self.base, self.version, self.path, query)
    }

    pub(crate) fn context(&self, fragment: &str) -> String {
        format!("{}{}/$metadata#{}", self.base, self.version, fragment)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum ResponseBody {
    Empty,
    Json(Vec<u8>),
    Text(String),
}

#[derive(Debug, Clone)]
pub(crate) struct GraphResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ResponseBody,
}

/// A handler's success.
pub(crate) struct Success {
    pub status: StatusCode,
    pub body: ResponseBody,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Success {
    pub(crate) fn json(value: &impl serde::Serialize) -> Self {
        Self {
            status: StatusCode::OK,
            body: ResponseBody::Json(serde_json::to_vec(value).unwrap_or_default()),
            headers: Vec::new(),
        }
    }

    pub(crate) fn json_bytes(bytes: Vec<u8>) -> Self {
        Self { status: StatusCode::OK, body: ResponseBody::Json(bytes), headers: Vec::new() }
    }

    pub(crate) fn no_content() -> Self {
        Self { status: StatusCode::NO_CONTENT, body: ResponseBody::Empty, headers: Vec::new() }
    }
}

/// What a handler gets.
pub(crate) struct Ctx<'a> {
    pub state: &'a Arc<AppState>,
    pub req: &'a GraphRequest,
    pub query: &'a Query,
    pub claims: &'a Claims,
    pub tenant: Arc<crate::directory::Tenant>,
}

/// The routes the emulator serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Members {
        group_id: String,
        transitive: bool,
        cast: Option<ObjectKind>,
        count_only: bool,
    },
    GetGroup(String),
    GroupsDelta,
    ListUsers,
    GetUser(String),
    PatchUser(String),
    CreateSubscription,
    ListSubscriptions,
    GetSubscription(String),
    PatchSubscription(String),
    DeleteSubscription(String),
    Reauthorize(String),
    Batch,
    ListCloudAuthorities,
    /// Leaf certificates of one CA, or of every CA (the flat collection).
    ListLeafCertificates(Option<String>),
}

/// Application permissions that allow reading group membership. [group-list-members]
const MEMBER_READ: &[&str] = &[
    "GroupMember.Read.All",
    "GroupMember.ReadWrite.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// [user-get] [user-list]
const USER_READ: &[&str] = &["User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];
/// [user-update]
const USER_WRITE: &[&str] = &["User.ReadWrite.All", "User.ReadUpdate.All", "Directory.ReadWrite.All"];
/// [subscription-post-subscriptions] group resources.
const SUBSCRIPTION_GROUPS: &[&str] =
    &["Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];

/// IMF-fixdate (RFC 9110 §5.6.7), the `Date` header's format.
const HTTP_DATE: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

fn parse_cast(segment: &str) -> Result<ObjectKind, GraphError> {
    match segment.to_ascii_lowercase().as_str() {
        "microsoft.graph.user" => Ok(ObjectKind::User),
        "microsoft.graph.group" => Ok(ObjectKind::Group),
        "microsoft.graph.device" => Ok(ObjectKind::Device),
        "microsoft.graph.serviceprincipal" => Ok(ObjectKind::ServicePrincipal),
        _ => Err(segment_not_found(segment)),
    }
}

fn segment_not_found(segment: &str) -> GraphError {
    GraphError::bad_request("BadRequest", format!("Resource not found for the segment '{segment}'."))
}

fn method_not_allowed() -> GraphError {
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
    )
}

impl Route {
    pub(crate) fn parse(method: &Method, path: &str) -> Result<Route, GraphError> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let get = |route: Route| if method == Method::GET { Ok(route) } else { Err(method_not_allowed()) };
        match segments.as_slice() {
            ["$batch"] => {
                if method == Method::POST {
                    Ok(Route::Batch)
                } else {
                    Err(method_not_allowed())
                }
            }
            ["groups", "delta" | "delta()"] => get(Route::GroupsDelta),
            ["groups", group_id] => get(Route::GetGroup((*group_id).to_owned())),
            ["groups", group_id, rel @ ("members" | "transitiveMembers"), rest @ ..] => {
                let transitive = *rel == "transitiveMembers";
                let (cast, count_only) = match rest {
                    [] => (None, false),
                    ["$count"] => (None, true),
                    [cast] => (Some(parse_cast(cast)?), false),
                    [cast, "$count"] => (Some(parse_cast(cast)?), true),
                    [other, ..] => return Err(segment_not_found(other)),
                };
                get(Route::Members { group_id: (*group_id).to_owned(), transitive, cast, count_only })
            }
            ["users"] => get(Route::ListUsers),
            ["users", id] => match *method {
                Method::GET => Ok(Route::GetUser((*id).to_owned())),
                Method::PATCH => Ok(Route::PatchUser((*id).to_owned())),
                _ => Err(method_not_allowed()),
            },
            ["subscriptions"] => match *method {
                Method::GET => Ok(Route::ListSubscriptions),
                Method::POST => Ok(Route::CreateSubscription),
                _ => Err(method_not_allowed()),
            },
            ["subscriptions", id] => match *method {
                Method::GET => Ok(Route::GetSubscription((*id).to_owned())),
                Method::PATCH => Ok(Route::PatchSubscription((*id).to_owned())),
                Method::DELETE => Ok(Route::DeleteSubscription((*id).to_owned())),
                _ => Err(method_not_allowed()),
            },
            ["subscriptions", id, "reauthorize"] => {
                if method == Method::POST {
                    Ok(Route::Reauthorize((*id).to_owned()))
                } else {
                    Err(method_not_allowed())
                }
            }
            ["deviceManagement", "cloudCertificationAuthority"] => get(Route::ListCloudAuthorities),
            ["deviceManagement", "cloudCertificationAuthority", id, "cloudCertificationAuthorityLeafCertificate"] => {
                get(Route::ListLeafCertificates(Some((*id).to_owned())))
            }
            ["deviceManagement", "cloudCertificationAuthorityLeafCertificate"] => {
                get(Route::ListLeafCertificates(None))
            }
            [first, ..] => Err(segment_not_found(first)),
            [] => Err(segment_not_found("")),
        }
    }

    /// The request's cost. [throttling-limits] base costs, then `$select` −1, `$top` < 20 −1, `$expand` +1, min 1.
    pub(crate) fn cost(&self, query: &Query) -> Cost {
        let (base, writes): (i64, u32) = match self {
            Route::Members { transitive: false, .. } => (3, 0),
            Route::Members { transitive: true, .. } => (5, 0),
            Route::ListUsers => (2, 0),
            Route::PatchUser(_) => (1, 1),
            // Subscriptions are not directory objects: they do not spend the directory write budget.
            _ => (1, 0),
        };
        let mut ru = base;
        if query.select.is_some() {
            ru -= 1;
        }
        if query.top.is_some_and(|t| t < 20) {
            ru -= 1;
        }
        if query.expand.is_some() {
            ru += 1;
        }
        Cost { resource_units: u32::try_from(ru.max(1)).unwrap_or(1), writes }
    }

    fn permissions(&self) -> &'static [&'static str] {
        match self {
            Route::Members { .. } | Route::GetGroup(_) | Route::GroupsDelta => MEMBER_READ,
            Route::ListUsers | Route::GetUser(_) => USER_READ,
            Route::PatchUser(_) => USER_WRITE,
            Route::CreateSubscription
            | Route::ListSubscriptions
            | Route::GetSubscription(_)
            | Route::PatchSubscription(_)
            | Route::DeleteSubscription(_)
            | Route::Reauthorize(_) => SUBSCRIPTION_GROUPS,
            Route::ListCloudAuthorities => cloud_pki::CLOUD_CA_LIST,
            Route::ListLeafCertificates(_) => cloud_pki::LEAF_READ,
            Route::Batch => &[],
        }
    }

    fn kind(&self, method: &Method) -> RequestKind {
        match self {
            Route::Batch => RequestKind::Batch,
            _ if method == Method::GET => RequestKind::Read,
            _ => RequestKind::Write,
        }
    }
}

/// Checks the bearer token. [auth-v2-service]
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Claims, GraphError> {
    let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => "",
    };
    if token.is_empty() {
        return Err(GraphError::unauthenticated("Access token is empty."));
    }
    let claims = state.signer.verify(token).map_err(|e| match e {
        crate::jwt::JwtError::Malformed => {
            GraphError::unauthenticated("CompactToken parsing failed with error code: 80049217")
        }
        crate::jwt::JwtError::BadSignature => {
            GraphError::unauthenticated("Access token validation failure. Invalid signature.")
        }
    })?;
    let now = state.directory.now().unix_timestamp();
    if claims.exp <= now {
        return Err(GraphError::unauthenticated("Lifetime validation failed, the token is expired."));
    }
    if claims.nbf > now {
        return Err(GraphError::unauthenticated("Lifetime validation failed, the token is not yet valid."));
    }
    if !GRAPH_AUDIENCES.contains(&claims.aud.trim_end_matches('/')) {
        return Err(GraphError::unauthenticated("Access token validation failure. Invalid audience."));
    }
    Ok(claims)
}

fn authorize(route: &Route, claims: &Claims) -> Result<(), GraphError> {
    let allowed = route.permissions();
    if allowed.is_empty() || claims.roles.iter().any(|r| allowed.contains(&r.as_str())) {
        Ok(())
    } else {
        Err(GraphError::forbidden())
    }
}

fn header(name: &'static str, value: impl AsRef<str>) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(value.as_ref()).unwrap_or_else(|_| HeaderValue::from_static("")),
    )
}

/// What the pipeline learnt about a request, for the log and the response headers.
#[derive(Default)]
struct Seen {
    tenant: Option<String>,
    app_id: Option<String>,
    kind: Option<RequestKind>,
    batch_items: Option<usize>,
    cost: Option<Cost>,
    limit_percentage: Option<f64>,
}

/// Answers one Graph request: the same pipeline for requests from the wire and for `$batch` items.
pub(crate) async fn process(state: &Arc<AppState>, req: GraphRequest) -> GraphResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = req
        .headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    let mut seen = Seen::default();
    let outcome = run(state, &req, &mut seen).await;
    let now = state.directory.now();
    let mut headers = HeaderMap::new();
    let (status, body) = match outcome {
        Ok(success) => {
            for (name, value) in success.headers {
                headers.insert(name, value);
            }
            (success.status, success.body)
        }
        Err(error) => {
            let date = now
                .format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"))
                .unwrap_or_default();
            for (name, value) in &error.headers {
                headers.insert(name.clone(), value.clone());
            }
            (error.status, ResponseBody::Json(error.body(&date, &request_id, &client_request_id)))
        }
    };
    let (name, value) = header("request-id", &request_id);
    headers.insert(name, value);
    let (name, value) = header("client-request-id", &client_request_id);
    headers.insert(name, value);
    if let Some(cost) = seen.cost {
        let (name, value) = header("x-ms-resource-unit", cost.resource_units.to_string());
        headers.insert(name, value);
    }
    if let Some(p) = seen.limit_percentage {
        let (name, value) = header("x-ms-throttle-limit-percentage", format!("{p:.2}"));
        headers.insert(name, value);
    }
    let content_type = match &body {
        ResponseBody::Json(_) => {
            Some("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8")
        }
        ResponseBody::Text(_) => Some("text/plain"),
        ResponseBody::Empty => None,
    };
    if let Some(ct) = content_type {
        headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    // Graph's `Date` header is its clock; here the emulator clock, so [`Directory::advance_clock`] shows in it
    // (a client computing subscription expirations from Graph's time sees the advanced clock).
    if let Ok(date) = now.format(HTTP_DATE) {
        let (name, value) = (axum::http::header::DATE, HeaderValue::from_str(&date));
        if let Ok(value) = value {
            headers.insert(name, value);
        }
    }
    let kind = seen.kind.unwrap_or(if req.method == Method::GET { RequestKind::Read } else { RequestKind::Write });
    state.directory.log_request(RequestRecord {
        at: now,
        tenant: seen.tenant,
        app_id: seen.app_id,
        method: req.method.to_string(),
        path: req.logged_path(),
        status: status.as_u16(),
        kind,
        batch_items: seen.batch_items,
        via_batch: req.via_batch,
        request_id,
    });
    GraphResponse { status, headers, body }
}

async fn run(state: &Arc<AppState>, req: &GraphRequest, seen: &mut Seen) -> Result<Success, GraphError> {
    let fault = lock(&state.faults).graph_fault();
    if let Some((kind, retry_after)) = fault {
        return Err(fault_error(kind, retry_after).await);
    }
    let claims = authenticate(state, &req.headers)?;
    seen.tenant = Some(claims.tid.clone());
    seen.app_id = Some(claims.appid.clone());
    let tenant = state
        .directory
        .tenant(&claims.tid)
        .ok_or_else(|| GraphError::unauthenticated("Access token validation failure. Invalid tenant."))?;
    let route = Route::parse(&req.method, &req.path)?;
    seen.kind = Some(route.kind(&req.method));
    if route == Route::Batch {
        if req.via_batch {
            return Err(GraphError::bad_request("BadRequest", "Nested batch requests are not supported."));
        }
        return batch::run(state, req, seen).await;
    }
    let query = Query::parse(&req.raw_query)?;
    let cost = route.cost(&query);
    seen.cost = Some(cost);
    let users = tenant.read().user_count();
    let charged = lock(&tenant.throttle).charge(
        &state.throttling,
        &state.refill,
        &claims.tid,
        users,
        &claims.appid,
        cost,
        Instant::now(),
    );
    match charged {
        Ok(accepted) => seen.limit_percentage = accepted.limit_percentage,
        Err(throttled) => {
            // [throttling] 429 with Retry-After; [throttling-limits] scope and reason headers.
            return Err(GraphError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests. Please retry after the time given in the Retry-After header.",
            )
            .with_header("retry-after", throttled.retry_after_secs.to_string())
            .with_header("x-ms-throttle-scope", &throttled.scope)
            .with_header("x-ms-throttle-information", throttled.information));
        }
    }
    authorize(&route, &claims)?;
    let ctx = Ctx { state, req, query: &query, claims: &claims, tenant };
    match &route {
        Route::Members { group_id, transitive, cast, count_only } => {
            members::list(&ctx, group_id, *transitive, *cast, *count_only)
        }
        Route::GetGroup(group_id) => members::get_group(&ctx, group_id),
        Route::GroupsDelta => delta::groups_delta(&ctx),
        Route::ListUsers => users::list(&ctx),
        Route::GetUser(id) => users::get(&ctx, id),
        Route::PatchUser(id) => users::patch(&ctx, id),
        Route::CreateSubscription => subscriptions::create(&ctx).await,
        Route::ListSubscriptions => subscriptions::list(&ctx),
        Route::GetSubscription(id) => subscriptions::get(&ctx, id),
        Route::PatchSubscription(id) => subscriptions::patch(&ctx, id),
        Route::DeleteSubscription(id) => subscriptions::delete(&ctx, id),
        Route::Reauthorize(id) => subscriptions::reauthorize(&ctx, id),
        Route::ListCloudAuthorities => cloud_pki::list_authorities(&ctx),
        Route::ListLeafCertificates(authority) => cloud_pki::list_leaves(&ctx, authority.as_deref()),
        Route::Batch => Err(method_not_allowed()),
    }
}

/// An injected fault as Graph would answer it. [throttling] [errors]
async fn fault_error(kind: FaultKind, retry_after: u64) -> GraphError {
    match kind {
        FaultKind::Throttle429 => GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests. Please retry after the time given in the Retry-After header.",
        )
        .with_header("retry-after", retry_after.to_string())
        .with_header("x-ms-throttle-information", "ResourceUnitLimitExceeded"),
        FaultKind::Internal500 => GraphError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "An internal server error occurred.",
        ),
        FaultKind::Unavailable503 => GraphError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please retry after the time given in the Retry-After header.",
        )
        .with_header("retry-after", retry_after.to_string()),
        FaultKind::Timeout => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            GraphError::new(StatusCode::GATEWAY_TIMEOUT, "GatewayTimeout", "The request timed out.")
        }
    }
}

/// The axum entry point of `/v1.0/*` and `/beta/*`.
pub(crate) async fn entry(
    State(state): State<Arc<AppState>>,
    Extension(BaseUrl(base)): Extension<BaseUrl>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let path = uri.path().trim_start_matches('/');
    let (version, rest) = path.split_once('/').unwrap_or((path, ""));
    let decoded = percent_decode(rest);
    let req = GraphRequest {
        method,
        version: version.to_owned(),
        path: decoded,
        raw_query: uri.query().unwrap_or("").to_owned(),
        headers,
        body,
        base,
        via_batch: false,
    };
    into_response(process(&state, req).await)
}

/// A request path, percent-decoded (RFC 3986: only the path, so `+` stays `+`); an invalid escape is kept as written,
/// and bytes that are not UTF-8 become U+FFFD.
pub(crate) fn percent_decode(path: &str) -> String {
    percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned()
}

pub(crate) fn into_response(resp: GraphResponse) -> Response {
    let body = match resp.body {
        ResponseBody::Empty => axum::body::Body::empty(),
        ResponseBody::Json(bytes) => axum::body::Body::from(bytes),
        ResponseBody::Text(text) => axum::body::Body::from(text),
    };
    let mut response = (resp.status, body).into_response();
    response.headers_mut().extend(resp.headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_percent_decoded_with_plus_and_invalid_escapes_kept() {
        for (path, decoded) in [
            ("users/alice%40contoso.com", "users/alice@contoso.com"),
            ("users/a+b%2Bc", "users/a+b+c"),
            ("users/%C3%BCn%C3%AF", "users/ünï"),
            ("users/100%25", "users/100%"),
            ("users/%zz%4", "users/%zz%4"),
            ("users/%FF", "users/\u{FFFD}"),
        ] {
            assert_eq!(percent_decode(path), decoded, "{path}");
        }
    }
}
