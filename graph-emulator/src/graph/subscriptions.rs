//! Change-notification subscriptions on groups: create (with the validation handshake), list, get, renew,
//! reauthorize, delete. [subscription-post-subscriptions] [change-notifications-delivery-webhooks]
//! [subscription-update] [subscription-reauthorize] [subscription-delete] [change-notifications-lifecycle-events]

use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::GraphError;
use super::{Ctx, Success};
use crate::model::SubscriptionRecord;

/// Longest lifetime of a directory (group) subscription. [subscription-resource-type] "Subscription lifetime"
pub(crate) const MAX_EXPIRATION_MINUTES: i64 = 41_760;
/// Longest `clientState`. [subscription-resource-type]
pub(crate) const MAX_CLIENT_STATE: usize = 128;
/// Group subscriptions per app and tenant. [subscription-post-subscriptions]
pub(crate) const MAX_SUBSCRIPTIONS: usize = 100;
/// The endpoint has 10 s to answer the validation request. [change-notifications-delivery-webhooks]
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    change_type: Option<String>,
    notification_url: Option<String>,
    lifecycle_notification_url: Option<String>,
    resource: Option<String>,
    expiration_date_time: Option<String>,
    client_state: Option<String>,
    #[serde(default)]
    include_resource_data: bool,
}

fn invalid(message: impl Into<String>) -> GraphError {
    GraphError::bad_request("InvalidRequest", message)
}

fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn subscription_json(ctx: &Ctx<'_>, s: &SubscriptionRecord) -> Value {
    json!({
        "@odata.context": ctx.req.context("subscriptions/$entity"),
        "id": s.id,
        "resource": s.resource,
        "applicationId": s.app_id,
        "changeType": s.change_type,
        "clientState": s.client_state,
        "notificationUrl": s.notification_url,
        "lifecycleNotificationUrl": s.lifecycle_notification_url,
        "expirationDateTime": format_time(s.expiration_date_time),
        "creatorId": ctx.claims.oid,
        "includeResourceData": false,
        "latestSupportedTlsVersion": "v1_2",
        "notificationUrlAppId": null,
    })
}

/// `/groups/{id}` or `/groups/{id}/members` → the group id.
fn group_of(resource: &str) -> Option<String> {
    let r = resource.trim_start_matches('/');
    let mut parts = r.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(g), Some(id), None, None) | (Some(g), Some(id), Some("members"), None)
            if g.eq_ignore_ascii_case("groups") && !id.is_empty() =>
        {
            Some(id.to_owned())
        }
        _ => None,
    }
}

fn parse_expiration(ctx: &Ctx<'_>, value: Option<&str>) -> Result<OffsetDateTime, GraphError> {
    let value = value.ok_or_else(|| invalid("expirationDateTime is required."))?;
    let expiration = OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|_| invalid(format!("Invalid expirationDateTime '{value}'.")))?;
    let now = ctx.state.directory.now();
    if expiration <= now {
        return Err(invalid("Subscription expiration must be in the future."));
    }
    if expiration > now + time::Duration::minutes(MAX_EXPIRATION_MINUTES) {
        return Err(invalid(format!(
            "Subscription expiration can only be {MAX_EXPIRATION_MINUTES} minutes in the future."
        )));
    }
    Ok(expiration)
}

fn check_url(ctx: &Ctx<'_>, url: &str, field: &str) -> Result<url::Url, GraphError> {
    let parsed = url::Url::parse(url).map_err(|_| invalid(format!("Invalid {field} '{url}'.")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if ctx.state.allow_http_notification_urls => Ok(parsed),
        _ => Err(invalid(format!("The {field} must use HTTPS."))),
    }
}

/// POSTs `?validationToken=…` and expects the token back as text/plain within 10 s.
/// [change-notifications-delivery-webhooks] "Notification endpoint validation"
async fn validate_endpoint(ctx: &Ctx<'_>, url: &url::Url) -> Result<(), GraphError> {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        uuid::Uuid::new_v4()
    );
    let mut target = url.clone();
    target.query_pairs_mut().append_pair("validationToken", &token);
    let failed = || {
        invalid(
            "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
        )
    };
    let response = ctx
        .state
        .client
        .post(target)
        .header("content-type", "text/plain; charset=utf-8")
        .timeout(VALIDATION_TIMEOUT)
        .send()
        .await
        .map_err(|_| failed())?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(failed());
    }
    let text_plain = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let body = response.text().await.map_err(|_| failed())?;
    if !text_plain || body != token {
        return Err(failed());
    }
    Ok(())
}

fn purge_expired(ctx: &Ctx<'_>) {
    let now = ctx.state.directory.now();
    ctx.tenant.write().subscriptions.retain(|_, s| s.expiration_date_time > now);
}

pub(crate) async fn create(ctx: &Ctx<'_>) -> Result<Success, GraphError> {
    let body: CreateBody = serde_json::from_slice(&ctx.req.body)
        .map_err(|e| GraphError::bad_request("BadRequest", format!("Invalid subscription payload: {e}")))?;
    let change_type = body.change_type.as_deref().ok_or_else(|| invalid("changeType is required."))?;
    let change_types: Vec<&str> = change_type.split(',').map(str::trim).collect();
    if change_types.is_empty() || change_types.iter().any(|c| !matches!(*c, "updated" | "deleted")) {
        return Err(invalid(format!("Invalid changeType '{change_type}': groups support updated and deleted.")));
    }
    let resource = body.resource.as_deref().ok_or_else(|| invalid("resource is required."))?;
    let group_id = group_of(resource).ok_or_else(|| invalid(format!("Resource '{resource}' is not supported.")))?;
    if body.include_resource_data {
        return Err(invalid("Rich notifications (includeResourceData) are not supported for groups."));
    }
    let notification_url = body.notification_url.as_deref().ok_or_else(|| invalid("notificationUrl is required."))?;
    let notification = check_url(ctx, notification_url, "notificationUrl")?;
    let lifecycle = body
        .lifecycle_notification_url
        .as_deref()
        .map(|u| check_url(ctx, u, "lifecycleNotificationUrl"))
        .transpose()?;
    if body.client_state.as_ref().is_some_and(|c| c.chars().count() > MAX_CLIENT_STATE) {
        return Err(invalid(format!("clientState is limited to {MAX_CLIENT_STATE} characters.")));
    }
    let expiration = parse_expiration(ctx, body.expiration_date_time.as_deref())?;
    purge_expired(ctx);
    let app_id = ctx.claims.appid.clone();
    let admission = |data: &crate::directory::TenantData| -> Result<(), GraphError> {
        if !data.groups.contains_key(&group_id) {
            return Err(GraphError::not_found(&group_id));
        }
        let mine: Vec<&SubscriptionRecord> = data.subscriptions.values().filter(|s| s.app_id == app_id).collect();
        if mine.iter().any(|s| {
            s.resource.trim_start_matches('/') == resource.trim_start_matches('/') && s.change_type == change_type
        }) {
            return Err(GraphError::new(
                StatusCode::CONFLICT,
                "Conflict",
                "A subscription with the same resource and changeType already exists for this application.",
            ));
        }
        if mine.len() >= MAX_SUBSCRIPTIONS {
            return Err(GraphError::new(
                StatusCode::FORBIDDEN,
                "ExtensionError",
                format!(
                    "The application has reached its limit of {MAX_SUBSCRIPTIONS} subscriptions on groups in this tenant."
                ),
            ));
        }
        Ok(())
    };
    admission(&ctx.tenant.read())?;
    validate_endpoint(ctx, &notification).await?;
    if let Some(lifecycle) = &lifecycle {
        validate_endpoint(ctx, lifecycle).await?;
    }
    let record = SubscriptionRecord {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: ctx.claims.tid.clone(),
        app_id: app_id.clone(),
        resource: resource.to_owned(),
        change_type: change_type.to_owned(),
        notification_url: notification_url.to_owned(),
        lifecycle_notification_url: body.lifecycle_notification_url.clone(),
        client_state: body.client_state.clone(),
        expiration_date_time: expiration,
        group_id: group_id.clone(),
    };
    {
        let mut data = ctx.tenant.write();
        admission(&data)?;
        data.subscriptions.insert(record.id.clone(), record.clone());
    }
    let mut success = Success::json(&subscription_json(ctx, &record));
    success.status = StatusCode::CREATED;
    Ok(success)
}

/// The caller's own subscription, or 404.
fn own(ctx: &Ctx<'_>, id: &str) -> Result<SubscriptionRecord, GraphError> {
    purge_expired(ctx);
    ctx.tenant.read().subscriptions.get(id).filter(|s| s.app_id == ctx.claims.appid).cloned().ok_or_else(|| {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The object was not found: subscription '{id}'."),
        )
    })
}

pub(crate) fn list(ctx: &Ctx<'_>) -> Result<Success, GraphError> {
    purge_expired(ctx);
    let data = ctx.tenant.read();
    let value: Vec<Value> = data
        .subscriptions
        .values()
        .filter(|s| s.app_id == ctx.claims.appid)
        .map(|s| {
            let mut v = subscription_json(ctx, s);
            if let Some(o) = v.as_object_mut() {
                o.remove("@odata.context");
            }
            v
        })
        .collect();
    Ok(Success::json(&json!({
        "@odata.context": ctx.req.context("subscriptions"),
        "value": value,
    })))
}

pub(crate) fn get(ctx: &Ctx<'_>, id: &str) -> Result<Success, GraphError> {
    let record = own(ctx, id)?;
    Ok(Success::json(&subscription_json(ctx, &record)))
}

/// Renewal: `PATCH {"expirationDateTime": …}`. [subscription-update]
pub(crate) fn patch(ctx: &Ctx<'_>, id: &str) -> Result<Success, GraphError> {
    own(ctx, id)?;
    let body: Value = serde_json::from_slice(&ctx.req.body).map_err(|_| invalid("Invalid payload."))?;
    let expiration = parse_expiration(ctx, body.get("expirationDateTime").and_then(Value::as_str))?;
    let record = {
        let mut data = ctx.tenant.write();
        let record = data.subscriptions.get_mut(id).ok_or_else(|| GraphError::not_found(id))?;
        record.expiration_date_time = expiration;
        record.clone()
    };
    Ok(Success::json(&subscription_json(ctx, &record)))
}

pub(crate) fn delete(ctx: &Ctx<'_>, id: &str) -> Result<Success, GraphError> {
    own(ctx, id)?;
    ctx.tenant.write().subscriptions.remove(id);
    Ok(Success::no_content())
}

/// `POST /subscriptions/{id}/reauthorize`: 204. [subscription-reauthorize]
/// TODO-correctness: Graph refuses a reauthorize and a renewal within 10 minutes of each other; not enforced.
pub(crate) fn reauthorize(ctx: &Ctx<'_>, id: &str) -> Result<Success, GraphError> {
    own(ctx, id)?;
    Ok(Success::no_content())
}
