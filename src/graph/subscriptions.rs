//! Change-notification subscriptions: create, list, get, renew, reauthorize, delete
//! [subscription-post-subscriptions, subscription-update, subscription-reauthorize, subscription-delete].
//!
//! Only the wire operations live here; when to call them is `sync::subscriptions`' business. The notification URL
//! carries the function key, so [`Subscription`]'s `Debug` leaves it out.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::client::GraphRequest;
use super::{GraphClient, GraphError, operation};

/// A subscription as Graph returns it.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub resource: String,
    pub change_type: String,
    /// Holds the function key: never log it.
    #[serde(default)]
    pub notification_url: Option<String>,
    #[serde(default)]
    pub lifecycle_notification_url: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expiration_date_time: OffsetDateTime,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("resource", &self.resource)
            .field("change_type", &self.change_type)
            .field("expiration_date_time", &self.expiration_date_time)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Whether this subscription watches `resource` for `change_type` (resource paths compare without the leading
    /// slash and case-insensitively: Graph echoes `Groups/{id}` or `/groups/{id}`).
    pub fn watches(&self, resource: &str, change_type: &str) -> bool {
        let normal = |r: &str| r.trim_start_matches('/').to_ascii_lowercase();
        normal(&self.resource) == normal(resource) && self.change_type.eq_ignore_ascii_case(change_type)
    }
}

/// What to create.
pub struct NewSubscription<'a> {
    pub resource: &'a str,
    pub change_type: &'a str,
    pub notification_url: &'a str,
    pub lifecycle_notification_url: Option<&'a str>,
    pub client_state: &'a str,
    pub expiration: OffsetDateTime,
}

fn time_text(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_default()
}

impl GraphClient {
    /// `POST /subscriptions`. Graph validates the notification URL (and the lifecycle URL) with a handshake before it
    /// answers, so this takes as long as the webhook takes to answer, up to 10 s each. `409` means the app already
    /// has a subscription with this resource and changeType.
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, resource = new.resource))]
    pub async fn create_subscription(&self, new: &NewSubscription<'_>) -> Result<Subscription, GraphError> {
        let mut body = json!({
            "changeType": new.change_type,
            "notificationUrl": new.notification_url,
            "resource": new.resource,
            "expirationDateTime": time_text(new.expiration),
            "clientState": new.client_state,
        });
        if let Some(lifecycle) = new.lifecycle_notification_url {
            body["lifecycleNotificationUrl"] = Value::String(lifecycle.to_owned());
        }
        self.send_json(operation::CREATE_SUBSCRIPTION, Method::POST, "subscriptions", Some(body)).await
    }

    /// `GET /subscriptions`: the app's subscriptions in this tenant, every page.
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant))]
    pub async fn list_subscriptions(&self) -> Result<Vec<Subscription>, GraphError> {
        let url = self.url("subscriptions", &[])?;
        let items = self.get_all_pages(operation::LIST_SUBSCRIPTIONS, url).await?;
        items
            .into_iter()
            .map(|item| {
                serde_json::from_value(item).map_err(|error| GraphError::Decode {
                    operation: operation::LIST_SUBSCRIPTIONS,
                    detail: format!("a subscription cannot be read: {error}"),
                })
            })
            .collect()
    }

    /// `GET /subscriptions/{id}`; `None` when Graph no longer knows it (404).
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, subscription_id = id))]
    pub async fn get_subscription(&self, id: &str) -> Result<Option<Subscription>, GraphError> {
        match self.send_json(operation::GET_SUBSCRIPTION, Method::GET, &format!("subscriptions/{id}"), None).await {
            Ok(subscription) => Ok(Some(subscription)),
            Err(error) if error.status() == Some(404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `PATCH /subscriptions/{id}` with a new `expirationDateTime` (a 404 means Graph no longer knows it).
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, subscription_id = id))]
    pub async fn renew_subscription(&self, id: &str, expiration: OffsetDateTime) -> Result<Subscription, GraphError> {
        let body = json!({ "expirationDateTime": time_text(expiration) });
        self.send_json(operation::RENEW_SUBSCRIPTION, Method::PATCH, &format!("subscriptions/{id}"), Some(body)).await
    }

    /// `POST /subscriptions/{id}/reauthorize` (answers 204) [subscription-reauthorize].
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, subscription_id = id))]
    pub async fn reauthorize_subscription(&self, id: &str) -> Result<(), GraphError> {
        let url = self.url(&format!("subscriptions/{id}/reauthorize"), &[])?;
        let request = GraphRequest { method: Method::POST, url, body: Some(b"{}".to_vec()), eventual: false };
        self.execute(operation::REAUTHORIZE_SUBSCRIPTION, &request).await.map(|_| ())
    }

    /// `DELETE /subscriptions/{id}`; a subscription already gone counts as deleted.
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, subscription_id = id))]
    pub async fn delete_subscription(&self, id: &str) -> Result<(), GraphError> {
        let url = self.url(&format!("subscriptions/{id}"), &[])?;
        let request = GraphRequest { method: Method::DELETE, url, body: None, eventual: false };
        match self.execute(operation::DELETE_SUBSCRIPTION, &request).await {
            Ok(_) => Ok(()),
            Err(error) if error.status() == Some(404) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn send_json(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Subscription, GraphError> {
        let url = self.url(path, &[])?;
        let body = body.map(|b| serde_json::to_vec(&b).unwrap_or_default());
        let request = GraphRequest { method, url, body, eventual: false };
        let response = self.execute(op, &request).await?;
        serde_json::from_slice(&response.body).map_err(|error| GraphError::Decode {
            operation: op,
            detail: format!("the subscription in the answer cannot be read: {error}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_reads_from_graph_json_and_hides_its_url_when_debugged() {
        let s: Subscription = serde_json::from_value(json!({
            "id": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07", "resource": "Groups/g1", "changeType": "updated",
            "notificationUrl": "https://x/api/function-webhook?code=s3cret", "clientState": null,
            "expirationDateTime": "2026-11-20T18:23:45.9356913Z", "applicationId": "a"
        }))
        .unwrap();
        assert!(s.watches("/groups/G1", "updated"));
        assert!(!s.watches("/groups/g1/members", "updated"));
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
