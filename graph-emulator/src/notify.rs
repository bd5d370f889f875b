//! Delivery of change notifications (membership changed through the back door) and lifecycle notifications.
//! [change-notifications-delivery-webhooks] [change-notifications-lifecycle-events]
//!
//! One POST per notification URL carries the notifications of every subscription that watches the changed group.
//! A non-2xx answer (or none within 10 s) is retried with exponential backoff for up to 4 hours; injected faults
//! may drop or duplicate a delivery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

use crate::directory::{NotifyEvent, lock};
use crate::model::SubscriptionRecord;
use crate::state::AppState;

/// Graph keeps retrying a failing endpoint for up to 4 hours. [change-notifications-delivery-webhooks]
const RETRY_WINDOW: Duration = Duration::from_secs(4 * 3600);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(300);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn worker(state: Arc<AppState>, mut receiver: mpsc::UnboundedReceiver<NotifyEvent>) {
    while let Some(event) = receiver.recv().await {
        let deliveries = match event {
            NotifyEvent::Changed(changed) => change_notifications(&state, &changed.tenant_id, &changed.group_id),
            NotifyEvent::Lifecycle { tenant_id, subscription_id, event } => {
                lifecycle_notification(&state, &tenant_id, &subscription_id, &event)
            }
        };
        for (url, body) in deliveries {
            let (drop, duplicate) = {
                let mut faults = lock(&state.faults);
                (faults.drop_notification(), faults.duplicate_notification())
            };
            if drop {
                continue;
            }
            let copies = if duplicate { 2 } else { 1 };
            for _ in 0..copies {
                tokio::spawn(deliver(state.clone(), url.clone(), body.clone()));
            }
        }
    }
}

fn time_string(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn live_subscriptions(state: &AppState, tenant_id: &str) -> Vec<SubscriptionRecord> {
    let now = state.directory.now();
    state.directory.subscriptions(tenant_id).into_iter().filter(|s| s.expiration_date_time > now).collect()
}

/// The notification bodies due for a group, by notification URL (its query string kept as given).
fn change_notifications(state: &AppState, tenant_id: &str, group_id: &str) -> Vec<(String, Value)> {
    let mut by_url: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for s in live_subscriptions(state, tenant_id) {
        if s.group_id != group_id || !s.change_type.split(',').any(|c| c.trim() == "updated") {
            continue;
        }
        // Observed shape for groups: "Groups/{id}" and "#Microsoft.Graph.Group". [change-notifications-delivery-webhooks]
        let resource = format!("Groups/{group_id}");
        by_url.entry(s.notification_url.clone()).or_default().push(json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "subscriptionId": s.id,
            "subscriptionExpirationDateTime": time_string(s.expiration_date_time),
            "clientState": s.client_state,
            "changeType": "updated",
            "resource": resource,
            "tenantId": tenant_id,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Group",
                "@odata.id": resource,
                "id": group_id,
                "organizationId": tenant_id,
            },
        }));
    }
    by_url.into_iter().map(|(url, value)| (url, json!({ "value": value }))).collect()
}

fn lifecycle_notification(
    state: &AppState,
    tenant_id: &str,
    subscription_id: &str,
    event: &str,
) -> Vec<(String, Value)> {
    let Some(s) = live_subscriptions(state, tenant_id).into_iter().find(|s| s.id == subscription_id) else {
        return Vec::new();
    };
    let Some(url) = s.lifecycle_notification_url.clone() else {
        return Vec::new();
    };
    vec![(
        url,
        json!({"value": [{
            "subscriptionId": s.id,
            "subscriptionExpirationDateTime": time_string(s.expiration_date_time),
            "tenantId": tenant_id,
            "clientState": s.client_state,
            "lifecycleEvent": event,
        }]}),
    )]
}

async fn deliver(state: Arc<AppState>, url: String, body: Value) {
    if !state.delivery_delay.is_zero() {
        tokio::time::sleep(state.delivery_delay).await;
    }
    let started = tokio::time::Instant::now();
    let mut wait = FIRST_RETRY;
    loop {
        let sent = state.client.post(&url).json(&body).timeout(DELIVERY_TIMEOUT).send().await;
        match sent {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => tracing::debug!(%url, status = %response.status(), "notification refused; will retry"),
            Err(error) => tracing::debug!(%url, %error, "notification failed; will retry"),
        }
        if started.elapsed() + wait > RETRY_WINDOW {
            tracing::warn!(%url, "notification dropped after 4 hours of retries");
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RETRY_INTERVAL);
    }
}
