//! `POST /$batch`: at most 20 requests, unique ids, `Content-Type` on bodies, `dependsOn`, responses in any order,
//! each item throttled on its own. [json-batching]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::GraphError;
use super::{GraphRequest, ResponseBody, Seen, Success, process};
use crate::directory::lock;
use crate::state::AppState;

/// The most requests one batch may hold. [json-batching]
pub(crate) const MAX_BATCH_REQUESTS: usize = 20;

#[derive(Debug, Deserialize)]
struct BatchBody {
    requests: Vec<BatchItem>,
}

#[derive(Debug, Deserialize)]
struct BatchItem {
    id: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default, rename = "dependsOn")]
    depends_on: Vec<String>,
}

fn invalid(message: impl Into<String>) -> GraphError {
    GraphError::bad_request("BadRequest", message)
}

fn item_error(id: &str, status: StatusCode, code: &str, message: &str) -> Value {
    serde_json::json!({
        "id": id,
        "status": status.as_u16(),
        "headers": {"Content-Type": "application/json"},
        "body": {"error": {"code": code, "message": message}},
    })
}

pub(super) async fn run(state: &Arc<AppState>, req: &GraphRequest, seen: &mut Seen) -> Result<Success, GraphError> {
    let batch: BatchBody =
        serde_json::from_slice(&req.body).map_err(|e| invalid(format!("Invalid batch payload format: {e}")))?;
    seen.batch_items = Some(batch.requests.len());
    if batch.requests.is_empty() {
        return Err(invalid("Invalid batch payload format: the batch holds no request."));
    }
    if batch.requests.len() > MAX_BATCH_REQUESTS {
        return Err(invalid(format!(
            "The batch holds {} requests; the limit is {MAX_BATCH_REQUESTS}.",
            batch.requests.len()
        )));
    }
    let mut ids = HashSet::new();
    for item in &batch.requests {
        if !ids.insert(item.id.as_str()) {
            return Err(invalid(format!("Batch request contains duplicate id '{}'.", item.id)));
        }
    }
    for item in &batch.requests {
        if let Some(missing) = item.depends_on.iter().find(|d| !ids.contains(d.as_str())) {
            return Err(invalid(format!("Request '{}' depends on unknown request '{missing}'.", item.id)));
        }
    }

    let authorization = req.headers.get(axum::http::header::AUTHORIZATION).cloned();
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut responses: Vec<Value> = Vec::with_capacity(batch.requests.len());
    for item in &batch.requests {
        let response = run_item(state, req, item, authorization.as_ref(), &statuses).await;
        let status = response.get("status").and_then(Value::as_u64).unwrap_or(500) as u16;
        statuses.insert(item.id.clone(), status);
        responses.push(response);
    }
    let order = lock(&state.faults).batch_order(responses.len());
    let shuffled: Vec<Value> = order.into_iter().map(|i| responses[i].take()).collect();
    Ok(Success::json(&serde_json::json!({ "responses": shuffled })))
}

async fn run_item(
    state: &Arc<AppState>,
    outer: &GraphRequest,
    item: &BatchItem,
    authorization: Option<&HeaderValue>,
    statuses: &HashMap<String, u16>,
) -> Value {
    if item.depends_on.iter().any(|d| statuses.get(d).is_none_or(|s| !(200..300).contains(s))) {
        return item_error(
            &item.id,
            StatusCode::FAILED_DEPENDENCY,
            "FailedDependency",
            "A request this request depends on failed.",
        );
    }
    let Ok(method) = Method::from_bytes(item.method.to_ascii_uppercase().as_bytes()) else {
        return item_error(&item.id, StatusCode::BAD_REQUEST, "BadRequest", "Invalid HTTP method.");
    };
    if item.url.contains("://") {
        return item_error(
            &item.id,
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The url of a batch request must be relative.",
        );
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &item.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    }
    let body = match &item.body {
        None | Some(Value::Null) => Bytes::new(),
        Some(body) => {
            if !headers.contains_key(axum::http::header::CONTENT_TYPE) {
                // [json-batching] a request with a body must say its Content-Type.
                let message = format!("Write request id : {} does not contain Content-Type header or body.", item.id);
                return item_error(&item.id, StatusCode::BAD_REQUEST, "BadRequest", &message);
            }
            Bytes::from(serde_json::to_vec(body).unwrap_or_default())
        }
    };
    if let Some(auth) = authorization {
        headers.insert(axum::http::header::AUTHORIZATION, auth.clone());
    }
    let url = item.url.trim_start_matches('/');
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let request = GraphRequest {
        method,
        version: outer.version.clone(),
        path: super::percent_decode(path),
        raw_query: query.to_owned(),
        headers,
        body,
        base: outer.base.clone(),
        via_batch: true,
    };
    let response = Box::pin(process(state, request)).await;
    let mut item_headers = Map::new();
    for (name, value) in &response.headers {
        if let Ok(v) = value.to_str() {
            item_headers.insert(canonical_header(name.as_str()), Value::String(v.to_owned()));
        }
    }
    let mut out = Map::new();
    out.insert("id".into(), Value::String(item.id.clone()));
    out.insert("status".into(), Value::from(response.status.as_u16()));
    out.insert("headers".into(), Value::Object(item_headers));
    match response.body {
        ResponseBody::Empty => {}
        ResponseBody::Json(bytes) => {
            out.insert("body".into(), serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        }
        ResponseBody::Text(text) => {
            out.insert("body".into(), Value::String(text));
        }
    }
    Value::Object(out)
}

/// `retry-after` → `Retry-After`, as Graph writes item headers.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}
