//! `function-webhook`: the Microsoft Graph change-notification endpoint.
//!
//! Graph's rules (change-notifications-delivery-webhooks, subscription-post-subscriptions,
//! change-notifications-lifecycle-events):
//! - a `?validationToken=` request (subscription create, for the notification and the lifecycle URL alike) is answered
//!   within 10 s with 200, `text/plain`, the decoded token as the body;
//! - a notification is answered with 2xx within 3 s, *after* it is durably persisted: here the host writes the
//!   `notifications` queue output binding before it answers Graph, and fails the invocation (so Graph retries) if it
//!   cannot. No Graph or storage call happens on this path, which keeps it far inside 3 s;
//! - `clientState` is compared in constant time with the current and the previous secret; a mismatch is dropped with
//!   a security log line and still answered 202 (the sender is not one of our subscriptions: a retry would not help).
//! - whether the subscription id is one we hold is checked by the queue worker (`notifications`), which drops the
//!   others with a security log line: that check reads storage, and this path does no I/O.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::AppState;
use super::envelope::{HttpRequestData, HttpResponseData, InvocationRequest, InvocationResponse, queue_message};
use super::invocation::Invocation;
use crate::config::WebhookSettings;

/// The binding names in `function-webhook/function.json`.
pub const REQUEST_BINDING: &str = "req";
pub const RESPONSE_BINDING: &str = "res";
pub const QUEUE_BINDING: &str = "notifications";

/// Graph batches notifications into one POST; a body larger than this is not a Graph notification.
pub const MAX_NOTIFICATION_BODY_BYTES: usize = 1024 * 1024;
/// The most messages one POST queues: Graph lets an app hold 100 group subscriptions per tenant
/// (subscription-post-subscriptions, `403` beyond), and each can bring a change and a lifecycle event; certsync has
/// two tenants. A POST naming more distinct subscriptions cannot be all Graph's.
pub const MAX_QUEUED_PER_POST: usize = 2 * 100 * 2;
/// Graph caps `clientState` at 128 characters (subscription-post-subscriptions); the validation token is short too.
const MAX_VALIDATION_TOKEN_CHARS: usize = 1024;

/// One item of a notification POST's `value` array: a change notification, or a lifecycle notification.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingNotification {
    subscription_id: Option<String>,
    client_state: Option<String>,
    change_type: Option<String>,
    lifecycle_event: Option<String>,
    resource: Option<String>,
    tenant_id: Option<String>,
    resource_data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct NotificationBody {
    value: Vec<Value>,
}

/// What goes on the queue: only what the queue worker needs, never the clientState.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedNotification {
    pub subscription_id: String,
    pub tenant_id: Option<String>,
    /// `updated`/`deleted` for a change; absent for a lifecycle event.
    pub change_type: Option<String>,
    /// `reauthorizationRequired` (the only lifecycle event groups get); absent for a change.
    pub lifecycle_event: Option<String>,
    /// The group the notification is about, taken from `resourceData.id` or the `resource` path.
    pub group_id: Option<String>,
    pub resource: Option<String>,
}

impl QueuedNotification {
    /// What makes two notifications of one POST the same work for the worker: the subscription, the group, and
    /// whether it is a lifecycle event (which one) or a change (`updated` and `deleted` alike: delta query says what
    /// changed).
    fn key(&self) -> (String, Option<String>, Option<String>) {
        let group = self.group_id.as_ref().map(|g| g.to_ascii_lowercase());
        (self.subscription_id.clone(), group, self.lifecycle_event.clone())
    }
}

/// Why a request was refused with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    #[error("the request has no body; Graph notifications are JSON objects with a \"value\" array")]
    EmptyBody,
    #[error("the body is {0} bytes; notifications larger than {MAX_NOTIFICATION_BODY_BYTES} bytes are refused")]
    TooLarge(usize),
    #[error("Content-Type {0:?} is not application/json")]
    WrongContentType(String),
    #[error("the body is not valid notification JSON (expected {{\"value\":[…]}}): {0}")]
    Malformed(String),
    #[error("the validationToken is longer than {MAX_VALIDATION_TOKEN_CHARS} characters")]
    TokenTooLong,
}

fn respond(response: &mut InvocationResponse, http: HttpResponseData) {
    response.outputs.insert(RESPONSE_BINDING.to_owned(), serde_json::to_value(http).expect("serializable"));
}

/// `POST /function-webhook`.
pub async fn handle(
    State(state): State<AppState>,
    Invocation { request, .. }: Invocation,
) -> (StatusCode, InvocationResponse) {
    answer(&state.webhook, &request)
}

/// Answers one webhook invocation. Pure: no I/O, so it always answers well within Graph's 3 s.
pub fn answer(settings: &WebhookSettings, request: &InvocationRequest) -> (StatusCode, InvocationResponse) {
    let mut response = InvocationResponse::default();
    let http = match HttpRequestData::from_invocation(request, REQUEST_BINDING) {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "rejected webhook invocation");
            response.log(error.to_string());
            return (StatusCode::BAD_REQUEST, response);
        }
    };

    if let Some(token) = http.query.get("validationToken") {
        if token.chars().count() > MAX_VALIDATION_TOKEN_CHARS {
            return reject(response, WebhookRejection::TokenTooLong);
        }
        // The host has already URL-decoded the query; the token goes back as is (no HTML or other escaping).
        tracing::info!("answered a Graph subscription validation request");
        respond(&mut response, HttpResponseData::text(200, token.clone()));
        return (StatusCode::OK, response);
    }

    let notifications = match parse_notifications(&http) {
        Ok(n) => n,
        Err(rejection) => return reject(response, rejection),
    };
    let received = notifications.len();
    let mut queued: Vec<QueuedNotification> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let (mut dropped, mut over_cap) = (0usize, 0usize);
    for notification in notifications {
        let Some(message) = accept(settings, &notification) else {
            dropped += 1;
            continue;
        };
        // The worker runs the same incremental run for every change of a subscription's group: one message each.
        if !seen.insert(message.key()) {
            continue;
        }
        if queued.len() == MAX_QUEUED_PER_POST {
            over_cap += 1;
            continue;
        }
        queued.push(message);
    }
    if over_cap > 0 {
        // More subscriptions than Graph lets this app hold in both tenants: not all of them are Graph's.
        tracing::warn!(
            over_cap,
            cap = MAX_QUEUED_PER_POST,
            "a notification POST named more subscriptions than Graph allows; the rest were dropped (security)"
        );
        response.log(format!(
            "Dropped {over_cap} notification(s) beyond {MAX_QUEUED_PER_POST} distinct subscriptions and groups in one \
             POST (more than Graph lets the app hold in both tenants)."
        ));
    }
    let merged = received - dropped - over_cap - queued.len();
    if dropped > 0 {
        // Security log: someone posted notifications that are not from our subscriptions.
        tracing::warn!(
            dropped,
            accepted = queued.len(),
            "dropped notifications whose clientState did not match (security)"
        );
        response.log(format!(
            "Dropped {dropped} notification(s) without a subscription id or whose clientState did not match."
        ));
    }
    if !queued.is_empty() {
        let messages: Vec<Value> = queued.iter().map(queue_message).collect();
        response.outputs.insert(QUEUE_BINDING.to_owned(), Value::Array(messages));
        response.log(format!("Queued {} notification(s) for processing.", queued.len()));
    }
    if merged > 0 {
        response.log(format!("Merged {merged} notification(s) for a subscription and group already queued."));
    }
    tracing::info!(received, queued = queued.len(), merged, dropped, "notifications received");
    respond(&mut response, HttpResponseData::text(202, ""));
    (StatusCode::OK, response)
}

fn reject(mut response: InvocationResponse, rejection: WebhookRejection) -> (StatusCode, InvocationResponse) {
    tracing::warn!(%rejection, "rejected a webhook request");
    response.log(rejection.to_string());
    respond(&mut response, HttpResponseData::text(400, rejection.to_string()));
    // The invocation itself succeeded: it answered the caller with a 400.
    (StatusCode::OK, response)
}

fn parse_notifications(http: &HttpRequestData) -> Result<Vec<IncomingNotification>, WebhookRejection> {
    let body = http.body.as_deref().filter(|b| !b.trim().is_empty()).ok_or(WebhookRejection::EmptyBody)?;
    if body.len() > MAX_NOTIFICATION_BODY_BYTES {
        return Err(WebhookRejection::TooLarge(body.len()));
    }
    if let Some(content_type) = http.header("content-type") {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(WebhookRejection::WrongContentType(content_type.to_owned()));
        }
    }
    let parsed: NotificationBody =
        serde_json::from_str(body).map_err(|e| WebhookRejection::Malformed(e.to_string()))?;
    parsed
        .value
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<IncomingNotification>(item)
                .map_err(|e| WebhookRejection::Malformed(format!("value[{i}]: {e}")))
        })
        .collect()
}

/// Constant-time comparison so the secret cannot be guessed byte by byte from response times.
fn same_secret(candidate: &str, secret: &SecretString) -> bool {
    let expected = secret.expose_secret().as_bytes();
    let candidate = candidate.as_bytes();
    // Lengths are compared in the clear: clientState length is not secret (Graph documents the 128 limit).
    candidate.len() == expected.len() && bool::from(candidate.ct_eq(expected))
}

fn accept(settings: &WebhookSettings, notification: &IncomingNotification) -> Option<QueuedNotification> {
    let client_state = notification.client_state.as_deref()?;
    let known = [settings.client_state.as_ref(), settings.previous_client_state.as_ref()]
        .into_iter()
        .flatten()
        .any(|secret| same_secret(client_state, secret));
    if !known {
        return None;
    }
    let subscription_id = notification.subscription_id.clone()?;
    if notification.change_type.is_none() && notification.lifecycle_event.is_none() {
        return None;
    }
    let group_id = notification
        .resource_data
        .as_ref()
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| group_from_resource(notification.resource.as_deref()?));
    Some(QueuedNotification {
        subscription_id,
        tenant_id: notification.tenant_id.clone(),
        change_type: notification.change_type.clone(),
        lifecycle_event: notification.lifecycle_event.clone(),
        group_id,
        resource: notification.resource.clone(),
    })
}

/// `Groups/{id}` or `/groups/{id}/members` → `{id}` (Graph's casing varies: change-notifications-delivery-webhooks).
fn group_from_resource(resource: &str) -> Option<String> {
    let mut parts = resource.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some(kind), Some(id)) if kind.eq_ignore_ascii_case("groups") && !id.is_empty() => Some(id.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            client_state: Some("current-secret".to_owned().into()),
            previous_client_state: Some("old-secret".to_owned().into()),
            notification_url: None,
        }
    }

    fn invocation(req: Value) -> InvocationRequest {
        serde_json::from_value(json!({"Data": {"req": req}, "Metadata": {}})).unwrap()
    }

    fn post(body: &str) -> InvocationRequest {
        invocation(json!({"Url": "https://x/api/function-webhook", "Method": "POST", "Query": {},
            "Headers": {"Content-Type": ["application/json; charset=utf-8"]}, "Body": body}))
    }

    fn http_status(response: &InvocationResponse) -> String {
        response.outputs["res"]["statusCode"].as_str().unwrap().to_owned()
    }

    fn notification(client_state: &str) -> Value {
        json!({"subscriptionId": "sub-1", "clientState": client_state, "changeType": "updated", "resource": "Groups/g1",
               "tenantId": "t", "resourceData": {"@odata.type": "#Microsoft.Graph.Group", "@odata.id": "Groups/g1", "id": "g1"}})
    }

    #[test]
    fn accepted_notifications_are_queued_and_answered_202() {
        let body = json!({"value": [notification("current-secret"), notification("old-secret")]}).to_string();
        let (status, response) = answer(&settings(), &post(&body));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(http_status(&response), "202");
        let queued = response.outputs["notifications"].as_array().unwrap();
        // Two notifications of one subscription and group are one incremental run: one message.
        assert_eq!(queued.len(), 1);
        assert!(response.logs.iter().any(|line| line.contains("Merged 1 notification(s)")), "{:?}", response.logs);
        let message: QueuedNotification = serde_json::from_str(queued[0].as_str().unwrap()).unwrap();
        assert_eq!(message.group_id.as_deref(), Some("g1"));
        assert!(!queued[0].as_str().unwrap().contains("secret"), "the clientState never reaches the queue");
    }

    #[test]
    fn a_wrong_client_state_is_dropped_and_nothing_is_queued() {
        let body = json!({"value": [notification("guess"), notification("current-secreT")]}).to_string();
        let (_, response) = answer(&settings(), &post(&body));
        assert_eq!(http_status(&response), "202");
        assert!(!response.outputs.contains_key("notifications"));
    }

    #[test]
    fn malformed_input_gets_400_with_the_reason() {
        let cases = [
            ("", "no body"),
            ("{", "not valid notification JSON"),
            ("[]", "not valid notification JSON"),
            (r#"{"value": [42]}"#, "value[0]"),
        ];
        for (body, expected) in cases {
            let (status, response) = answer(&settings(), &post(body));
            assert_eq!(status, StatusCode::OK, "{body:?}");
            assert_eq!(http_status(&response), "400", "{body:?}");
            assert!(
                response.outputs["res"]["body"].as_str().unwrap().contains(expected),
                "{body:?}: {:?}",
                response.outputs
            );
        }
        let big = format!(r#"{{"value":[],"pad":"{}"}}"#, "x".repeat(MAX_NOTIFICATION_BODY_BYTES));
        assert_eq!(http_status(&answer(&settings(), &post(&big)).1), "400");
        let xml = invocation(json!({"Method": "POST", "Headers": {"Content-Type": ["text/xml"]}, "Body": "<x/>"}));
        assert_eq!(http_status(&answer(&settings(), &xml).1), "400");
    }

    #[test]
    fn the_validation_token_is_echoed_as_plain_text() {
        for token in [
            "Validation: Testing client application reachability for subscription Request-Id: 8f2c",
            "a+b/c=",
            "ünï cödé",
        ] {
            let request = invocation(json!({"Method": "POST", "Query": {"validationToken": token}, "Headers": {}}));
            let (status, response) = answer(&settings(), &request);
            assert_eq!(status, StatusCode::OK);
            let res = &response.outputs["res"];
            assert_eq!(res["statusCode"], "200");
            assert_eq!(res["body"], token);
            assert!(res["headers"]["Content-Type"].as_str().unwrap().starts_with("text/plain"));
        }
    }
}
