//! Graph change-notification subscriptions on every configured group, in both tenants (each with its own client),
//! kept alive by the timer (after each sync) and by `certsync subscriptions`.
//!
//! [subscription-post-subscriptions, subscription-update, subscription-reauthorize, change-notifications-lifecycle-events]
//! - one subscription per group: resource `/groups/{id}`, changeType `updated` (membership changes are updates of the
//!   group), `notificationUrl` = `lifecycleNotificationUrl` = `WEBHOOK_NOTIFICATION_URL`, `clientState` =
//!   `WEBHOOK_CLIENT_STATE`, expiring 41,760 minutes (the directory maximum) from Graph's clock, minus a margin;
//! - what we hold is recorded in `subscriptions/<tenant>.json` in the state container (ETag-guarded): the queue
//!   worker drops notifications of subscriptions not recorded there, and the records carry the last renewal or
//!   reauthorization, because Graph refuses both within 10 minutes;
//! - each run reads every recorded subscription back (`GET /subscriptions/{id}`): one Graph request per group, which
//!   notices a subscription Graph dropped (groups never get `subscriptionRemoved`) within one timer period;
//! - renewal when less than [`RENEW_BEFORE`] remains; a subscription Graph no longer knows is created again; `409`
//!   on create (the app already has one, e.g. the state was lost) adopts the existing one;
//! - a `reauthorizationRequired` lifecycle event reauthorizes (unless renewed in the last 10 minutes).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::tenants::Tenants;
use crate::config::Settings;
use crate::domain::GroupId;
use crate::domain::Side;
use crate::domain::TenantId;
use crate::graph::{GraphClient, GraphError, NewSubscription, Subscription};
use crate::storage::{StorageError, Stores, read_json, update_json};

pub const SUBSCRIPTIONS_SCHEMA_VERSION: u32 = 1;
/// Longest lifetime of a subscription on a directory resource [subscription-resource-type].
pub const MAX_LIFETIME: time::Duration = time::Duration::minutes(41_760);
/// Requested lifetime is the maximum minus this: clock skew and the time the create takes must not push it over.
const LIFETIME_MARGIN: time::Duration = time::Duration::hours(1);
/// Renew when less than this remains: the timer runs every few hours, so a renewal is never missed by much.
pub const RENEW_BEFORE: time::Duration = time::Duration::days(3);
/// Graph refuses a reauthorization and a renewal within 10 minutes of each other [change-notifications-lifecycle-events].
pub const ACTION_SPACING: time::Duration = time::Duration::minutes(10);
const CHANGE_TYPE: &str = "updated";
const BOOK_ATTEMPTS: u32 = 8;

/// `subscriptions/<tenant>.json`.
pub fn book_blob(tenant: &crate::domain::TenantId) -> String {
    format!("subscriptions/{tenant}.json")
}

/// The last thing done to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Created,
    /// Found already existing (after a `409`) and taken over.
    Adopted,
    Renewed,
    Reauthorized,
}

/// One recorded subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionEntry {
    pub id: String,
    pub group: GroupId,
    pub resource: String,
    pub change_type: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expiration: OffsetDateTime,
    pub last_action: Action,
    /// Graph's time of the last action.
    #[serde(with = "time::serde::rfc3339")]
    pub last_action_at: OffsetDateTime,
}

/// A tenant's recorded subscriptions, by group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionBook {
    pub schema_version: u32,
    pub subscriptions: BTreeMap<GroupId, SubscriptionEntry>,
}

/// What one maintenance pass found and did.
#[derive(Debug, Default)]
pub struct SubscriptionsOutcome {
    /// Every subscription held afterwards.
    pub records: Vec<(Side, SubscriptionEntry)>,
    /// What changed ("created …", "renewed …").
    pub actions: Vec<String>,
    /// What failed; the sync itself is never failed by these.
    pub problems: Vec<String>,
}

impl SubscriptionsOutcome {
    /// Lines for the run report's notes.
    pub fn report_notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.actions.iter().map(|a| format!("subscriptions: {a}")).collect();
        notes.extend(self.problems.iter().map(|p| format!("subscriptions: PROBLEM: {p}")));
        notes
    }
}

impl fmt::Display for SubscriptionsOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<10} {:<38} {:<38} {:<22} last action", "tenant", "group", "subscription", "expires (UTC)")?;
        for (side, entry) in &self.records {
            let expires = entry.expiration.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            writeln!(f, "{:<10} {:<38} {:<38} {:<22} {:?}", side, entry.group, entry.id, expires, entry.last_action)?;
        }
        for action in &self.actions {
            writeln!(f, "done: {action}")?;
        }
        for problem in &self.problems {
            writeln!(f, "PROBLEM: {problem}")?;
        }
        Ok(())
    }
}

/// What a lifecycle event led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleOutcome {
    Reauthorized,
    /// Renewed or reauthorized less than 10 minutes ago: Graph would refuse a second action, and needs none.
    AlreadyDone(String),
    /// Graph no longer knew it (or said it was removed): a new one was created.
    Recreated(String),
    /// Nothing to do for this event here (`missed`: the caller reconciles the group).
    Ignored,
    /// Nothing was written to Graph or to the records, and why (`DRY_RUN`).
    NotWritten(String),
}

/// The per-group decision, made before any write (also what the tests check).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    Keep,
    Renew,
    /// Renewal is due, but a reauthorization happened less than 10 minutes ago.
    RenewLater,
    Recreate,
}

fn decide(entry: &SubscriptionEntry, live: Option<&Subscription>, ours: &str, now: OffsetDateTime) -> Next {
    let Some(live) = live else { return Next::Recreate };
    if live.notification_url.as_deref().is_some_and(|url| !same_url(url, ours)) {
        // The URL (or its function key) changed: a subscription delivering elsewhere is as good as none.
        return Next::Recreate;
    }
    if live.expiration_date_time - now >= RENEW_BEFORE {
        return Next::Keep;
    }
    if entry.last_action == Action::Reauthorized && now - entry.last_action_at < ACTION_SPACING {
        return Next::RenewLater;
    }
    Next::Renew
}

/// URL equality after parsing (Graph may echo the URL normalised: host case, default port, escaping).
fn same_url(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Keeps the subscriptions of every configured group alive, in both tenants; acts on lifecycle events.
pub struct SubscriptionKeeper {
    settings: Arc<Settings>,
    tenants: Tenants,
}

impl SubscriptionKeeper {
    pub fn new(settings: Arc<Settings>, tenants: Tenants) -> Self {
        Self { settings, tenants }
    }

    /// The Graph client and tenant of one side.
    fn side(&self, side: Side) -> (&GraphClient, &TenantId) {
        let client = self.tenants.side(side);
        (client, client.tenant())
    }

    /// The configured groups of one side, each once.
    fn groups_of(&self, side: Side) -> BTreeSet<GroupId> {
        self.settings.sync.pairs.iter().flat_map(|p| p.groups(side)).cloned().collect()
    }

    /// Creates, adopts, renews or recreates the subscription of every configured group in both tenants, and deletes
    /// those of groups no longer configured. Needs `WEBHOOK_NOTIFICATION_URL`.
    #[tracing::instrument(skip_all)]
    pub async fn ensure(&self, stores: &Stores) -> SubscriptionsOutcome {
        let mut outcome = SubscriptionsOutcome::default();
        if self.settings.webhook.notification_url.is_none() {
            outcome.problems.push("WEBHOOK_NOTIFICATION_URL is not set: no subscription is kept".to_owned());
            return outcome;
        }
        for side in [Side::TenantA, Side::TenantB] {
            self.ensure_side(stores, side, &mut outcome).await;
        }
        for action in &outcome.actions {
            tracing::info!(%action, "subscription maintained");
        }
        for problem in &outcome.problems {
            tracing::warn!(%problem, "subscription problem");
        }
        outcome
    }

    async fn ensure_side(&self, stores: &Stores, side: Side, outcome: &mut SubscriptionsOutcome) {
        let (client, tenant) = self.side(side);
        let blob = book_blob(tenant);
        let book = match read_json::<SubscriptionBook>(stores.state.as_ref(), &blob).await {
            Ok(found) => found.map(|(book, _)| book).unwrap_or_default(),
            Err(error) => {
                outcome.problems.push(format!("{side}: the subscription records cannot be read: {error}"));
                return;
            }
        };
        let wanted = self.groups_of(side);
        // group → Some(entry) to record, None to forget.
        let mut updates: BTreeMap<GroupId, Option<SubscriptionEntry>> = BTreeMap::new();
        for group in &wanted {
            let result = match book.subscriptions.get(group) {
                Some(entry) => self.maintain(client, side, entry, outcome).await,
                None => self.create_or_adopt(client, side, group, outcome).await,
            };
            match result {
                Ok(Some(entry)) => {
                    updates.insert(group.clone(), Some(entry));
                }
                Ok(None) => {}
                Err(problem) => outcome.problems.push(self.scrub(&problem)),
            }
        }
        for (group, entry) in book.subscriptions.iter().filter(|(g, _)| !wanted.contains(*g)) {
            match client.delete_subscription(&entry.id).await {
                Ok(()) => {
                    outcome.actions.push(format!(
                        "deleted {} subscription {} of group {group}, which is no longer configured",
                        side, entry.id
                    ));
                    updates.insert(group.clone(), None);
                }
                Err(error) => outcome.problems.push(self.scrub(&format!(
                    "{}: the subscription {} of unconfigured group {group} could not be deleted: {error}",
                    side, entry.id
                ))),
            }
        }
        let unchanged = updates.iter().all(|(group, entry)| book.subscriptions.get(group) == entry.as_ref())
            && book.schema_version == SUBSCRIPTIONS_SCHEMA_VERSION;
        let written = if unchanged { Ok(book) } else { self.write_book(stores, &blob, &updates).await };
        match written {
            Ok(book) => outcome.records.extend(book.subscriptions.into_values().map(|e| (side, e))),
            Err(error) => outcome.problems.push(format!(
                "{}: the subscription records could not be written ({error}); the next run adopts what was created",
                side
            )),
        }
    }

    async fn write_book(
        &self,
        stores: &Stores,
        blob: &str,
        updates: &BTreeMap<GroupId, Option<SubscriptionEntry>>,
    ) -> Result<SubscriptionBook, StorageError> {
        update_json::<SubscriptionBook, _>(stores.state.as_ref(), blob, BOOK_ATTEMPTS, |current| {
            let mut book = current.unwrap_or_default();
            book.schema_version = SUBSCRIPTIONS_SCHEMA_VERSION;
            for (group, entry) in updates {
                match entry {
                    Some(entry) => book.subscriptions.insert(group.clone(), entry.clone()),
                    None => book.subscriptions.remove(group),
                };
            }
            book
        })
        .await
    }

    /// A recorded subscription: read it back, renew it when due, recreate it when Graph lost it.
    /// `Ok(Some)`: the entry to record (changed or not).
    async fn maintain(
        &self,
        client: &GraphClient,
        side: Side,
        entry: &SubscriptionEntry,
        outcome: &mut SubscriptionsOutcome,
    ) -> Result<Option<SubscriptionEntry>, String> {
        let ours = self.notification_url();
        let live = client
            .get_subscription(&entry.id)
            .await
            .map_err(|error| format!("{}: reading subscription {} failed: {error}", side, entry.id))?;
        let now = client.graph_now();
        match decide(entry, live.as_ref(), ours, now) {
            Next::Keep => {
                let mut entry = entry.clone();
                if let Some(live) = live {
                    entry.expiration = live.expiration_date_time;
                }
                Ok(Some(entry))
            }
            Next::RenewLater => {
                outcome.actions.push(format!(
                    "{} subscription {} is due for renewal but was reauthorized less than 10 minutes ago; the next run renews it",
                    side,
                    entry.id
                ));
                Ok(Some(entry.clone()))
            }
            Next::Renew => match client.renew_subscription(&entry.id, now + MAX_LIFETIME - LIFETIME_MARGIN).await {
                Ok(renewed) => {
                    outcome.actions.push(format!(
                        "renewed {} subscription {} of group {} until {}",
                        side,
                        entry.id,
                        entry.group,
                        rfc3339(renewed.expiration_date_time)
                    ));
                    Ok(Some(SubscriptionEntry {
                        expiration: renewed.expiration_date_time,
                        last_action: Action::Renewed,
                        last_action_at: client.graph_now(),
                        ..entry.clone()
                    }))
                }
                Err(error) if error.status() == Some(404) => {
                    self.recreate(client, side, entry, "Graph no longer knew it at renewal", outcome).await
                }
                Err(error) => Err(format!("{}: renewing subscription {} failed: {error}", side, entry.id)),
            },
            Next::Recreate => {
                let why =
                    if live.is_none() { "Graph no longer knew it" } else { "it delivered to another notification URL" };
                self.recreate(client, side, entry, why, outcome).await
            }
        }
    }

    async fn recreate(
        &self,
        client: &GraphClient,
        side: Side,
        entry: &SubscriptionEntry,
        why: &str,
        outcome: &mut SubscriptionsOutcome,
    ) -> Result<Option<SubscriptionEntry>, String> {
        // Best effort: a subscription to another URL must go before the new one (same resource → 409 otherwise).
        let _ = client.delete_subscription(&entry.id).await;
        outcome
            .actions
            .push(format!("{} subscription {} of group {}: {why}; creating a new one", side, entry.id, entry.group));
        self.create_or_adopt(client, side, &entry.group, outcome).await
    }

    /// `POST /subscriptions`; on `409` the app already has one for the group: adopt it (renewing it if due), or
    /// replace it when it delivers to another URL.
    async fn create_or_adopt(
        &self,
        client: &GraphClient,
        side: Side,
        group: &GroupId,
        outcome: &mut SubscriptionsOutcome,
    ) -> Result<Option<SubscriptionEntry>, String> {
        let resource = format!("/groups/{group}");
        let created = self.create(client, &resource).await;
        let error = match created {
            Ok(subscription) => {
                outcome.actions.push(format!(
                    "created {} subscription {} on group {group} until {}",
                    side,
                    subscription.id,
                    rfc3339(subscription.expiration_date_time)
                ));
                return Ok(Some(self.entry(client, group, &resource, &subscription, Action::Created)));
            }
            Err(error) => error,
        };
        if error.status() != Some(409) {
            return Err(format!("{side}: creating the subscription on group {group} failed: {error}"));
        }
        let existing = client
            .list_subscriptions()
            .await
            .map_err(|e| format!("{side}: listing subscriptions after a 409 failed: {e}"))?
            .into_iter()
            .find(|s| s.watches(&resource, CHANGE_TYPE))
            .ok_or_else(|| {
                format!(
                    "{}: Graph answered 409 for group {group} but lists no such subscription; retrying next run",
                    side
                )
            })?;
        let entry = self.entry(client, group, &resource, &existing, Action::Adopted);
        outcome.actions.push(format!(
            "adopted the existing {} subscription {} on group {group} (Graph answered 409 Conflict to create)",
            side, existing.id
        ));
        match decide(&entry, Some(&existing), self.notification_url(), client.graph_now()) {
            Next::Keep | Next::RenewLater => Ok(Some(entry)),
            Next::Renew => Box::pin(self.maintain(client, side, &entry, outcome)).await,
            Next::Recreate => {
                client.delete_subscription(&existing.id).await.map_err(|e| {
                    format!("{}: replacing subscription {} (another URL) failed: {e}", side, existing.id)
                })?;
                outcome.actions.push(format!(
                    "deleted {} subscription {}: it delivered to another notification URL",
                    side, existing.id
                ));
                let subscription = self
                    .create(client, &resource)
                    .await
                    .map_err(|e| format!("{side}: creating the subscription on group {group} failed: {e}"))?;
                Ok(Some(self.entry(client, group, &resource, &subscription, Action::Created)))
            }
        }
    }

    async fn create(&self, client: &GraphClient, resource: &str) -> Result<Subscription, GraphError> {
        let url = self.notification_url();
        let client_state = self.settings.webhook.client_state.as_ref().map(|s| s.expose_secret()).unwrap_or_default();
        // Graph's clock bounds the expiry; read it from a cheap request if this client has not talked to Graph yet.
        if !client.knows_graph_time() {
            let _ = client.list_subscriptions().await;
        }
        let now = client.graph_now();
        client
            .create_subscription(&NewSubscription {
                resource,
                change_type: CHANGE_TYPE,
                notification_url: url,
                lifecycle_notification_url: Some(url),
                client_state,
                expiration: now + MAX_LIFETIME - LIFETIME_MARGIN,
            })
            .await
    }

    fn entry(
        &self,
        client: &GraphClient,
        group: &GroupId,
        resource: &str,
        subscription: &Subscription,
        action: Action,
    ) -> SubscriptionEntry {
        SubscriptionEntry {
            id: subscription.id.clone(),
            group: group.clone(),
            resource: resource.to_owned(),
            change_type: CHANGE_TYPE.to_owned(),
            expiration: subscription.expiration_date_time,
            last_action: action,
            last_action_at: client.graph_now(),
        }
    }

    fn notification_url(&self) -> &str {
        self.settings.webhook.notification_url.as_ref().map(|u| u.expose()).unwrap_or_default()
    }

    /// Error texts may quote the request: the notification URL carries the function key.
    fn scrub(&self, text: &str) -> String {
        match &self.settings.webhook.notification_url {
            Some(url) => text.replace(url.expose(), &url.redacted()),
            None => text.to_owned(),
        }
    }

    /// The recorded subscription with this id, on either side; `None` when it is not one of ours.
    pub async fn find(
        &self,
        stores: &Stores,
        subscription_id: &str,
    ) -> Result<Option<(Side, SubscriptionEntry)>, StorageError> {
        for side in [Side::TenantA, Side::TenantB] {
            let (_, tenant) = self.side(side);
            if let Some((book, _)) = read_json::<SubscriptionBook>(stores.state.as_ref(), &book_blob(tenant)).await?
                && let Some(entry) =
                    book.subscriptions.into_values().find(|e| e.id.eq_ignore_ascii_case(subscription_id))
            {
                return Ok(Some((side, entry)));
            }
        }
        Ok(None)
    }

    /// Acts on a lifecycle notification for one of our subscriptions. `Err`: try again later (the queue retries).
    pub async fn handle_lifecycle_event(
        &self,
        stores: &Stores,
        side: Side,
        entry: &SubscriptionEntry,
        event: &str,
    ) -> Result<LifecycleOutcome, String> {
        let (client, tenant) = self.side(side);
        let blob = book_blob(tenant);
        let mut outcome = SubscriptionsOutcome::default();
        let updated = match event {
            e if e.eq_ignore_ascii_case("reauthorizationRequired") => {
                // Read it back first: Graph may have dropped it already, and the answer's Date is Graph's clock for
                // the 10-minute rule.
                let live = client
                    .get_subscription(&entry.id)
                    .await
                    .map_err(|e| self.scrub(&format!("reading subscription {} failed: {e}", entry.id)))?;
                if live.is_none() {
                    let Some(new) = self.recreate(client, side, entry, "Graph no longer knew it", &mut outcome).await?
                    else {
                        return Err(format!("subscription {} could not be recreated", entry.id));
                    };
                    return self.record_lifecycle(stores, &blob, entry, new).await;
                }
                let now = client.graph_now();
                if now - entry.last_action_at < ACTION_SPACING && entry.last_action != Action::Adopted {
                    return Ok(LifecycleOutcome::AlreadyDone(format!(
                        "{:?} at {} (Graph refuses a reauthorization and a renewal within 10 minutes)",
                        entry.last_action,
                        rfc3339(entry.last_action_at)
                    )));
                }
                match client.reauthorize_subscription(&entry.id).await {
                    Ok(()) => SubscriptionEntry {
                        last_action: Action::Reauthorized,
                        last_action_at: client.graph_now(),
                        ..entry.clone()
                    },
                    Err(error) if error.status() == Some(404) => {
                        match self.recreate(client, side, entry, "Graph no longer knew it", &mut outcome).await? {
                            Some(new) => new,
                            None => return Err(format!("subscription {} could not be recreated", entry.id)),
                        }
                    }
                    Err(error) => {
                        return Err(self.scrub(&format!("reauthorizing subscription {} failed: {error}", entry.id)));
                    }
                }
            }
            e if e.eq_ignore_ascii_case("subscriptionRemoved") => {
                match self.recreate(client, side, entry, "Graph removed it", &mut outcome).await? {
                    Some(new) => new,
                    None => return Err(format!("subscription {} could not be recreated", entry.id)),
                }
            }
            _ => return Ok(LifecycleOutcome::Ignored),
        };
        self.record_lifecycle(stores, &blob, entry, updated).await
    }

    async fn record_lifecycle(
        &self,
        stores: &Stores,
        blob: &str,
        before: &SubscriptionEntry,
        updated: SubscriptionEntry,
    ) -> Result<LifecycleOutcome, String> {
        let recreated = updated.id != before.id;
        self.write_book(stores, blob, &BTreeMap::from([(before.group.clone(), Some(updated.clone()))]))
            .await
            .map_err(|e| format!("the subscription records could not be written: {e}"))?;
        Ok(if recreated { LifecycleOutcome::Recreated(updated.id) } else { LifecycleOutcome::Reauthorized })
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const OURS: &str = "https://app.azurewebsites.net/api/function-webhook?code=k";

    fn entry(last_action: Action, at: OffsetDateTime) -> SubscriptionEntry {
        SubscriptionEntry {
            id: "s1".into(),
            group: GroupId::parse("aaaaaaaa-0000-4000-8000-000000000001").unwrap(),
            resource: "/groups/aaaaaaaa-0000-4000-8000-000000000001".into(),
            change_type: "updated".into(),
            expiration: at + MAX_LIFETIME,
            last_action,
            last_action_at: at,
        }
    }

    fn live(expires: OffsetDateTime, url: &str) -> Subscription {
        serde_json::from_value(serde_json::json!({
            "id": "s1", "resource": "/groups/aaaaaaaa-0000-4000-8000-000000000001", "changeType": "updated",
            "notificationUrl": url, "expirationDateTime": rfc3339(expires)
        }))
        .unwrap()
    }

    #[test]
    fn renewal_is_due_in_the_last_three_days_and_never_within_ten_minutes_of_a_reauthorization() {
        let now = datetime!(2026-11-22 10:00 UTC);
        let created = entry(Action::Created, now - time::Duration::days(26));
        let far = live(now + time::Duration::days(4), OURS);
        let near = live(now + time::Duration::days(2), OURS);
        assert_eq!(decide(&created, Some(&far), OURS, now), Next::Keep);
        assert_eq!(decide(&created, Some(&near), OURS, now), Next::Renew);
        let reauthorized = entry(Action::Reauthorized, now - time::Duration::minutes(3));
        assert_eq!(decide(&reauthorized, Some(&near), OURS, now), Next::RenewLater);
        let reauthorized_long_ago = entry(Action::Reauthorized, now - time::Duration::minutes(11));
        assert_eq!(decide(&reauthorized_long_ago, Some(&near), OURS, now), Next::Renew);
    }

    #[test]
    fn a_lost_subscription_or_one_delivering_elsewhere_is_recreated() {
        let now = datetime!(2026-11-22 10:00 UTC);
        let created = entry(Action::Created, now);
        assert_eq!(decide(&created, None, OURS, now), Next::Recreate);
        let elsewhere = live(now + time::Duration::days(20), "https://old.example/api/function-webhook?code=old");
        assert_eq!(decide(&created, Some(&elsewhere), OURS, now), Next::Recreate);
        let normalised =
            live(now + time::Duration::days(20), "https://APP.azurewebsites.net:443/api/function-webhook?code=k");
        assert_eq!(decide(&created, Some(&normalised), OURS, now), Next::Keep, "the same URL, echoed normalised");
    }

    #[test]
    fn the_book_round_trips_as_json() {
        let mut book = SubscriptionBook { schema_version: 1, ..Default::default() };
        let e = entry(Action::Renewed, datetime!(2026-11-22 10:00 UTC));
        book.subscriptions.insert(e.group.clone(), e);
        let text = serde_json::to_string(&book).unwrap();
        assert!(text.contains("\"lastAction\":\"renewed\""), "{text}");
        assert_eq!(serde_json::from_str::<SubscriptionBook>(&text).unwrap(), book);
    }
}
