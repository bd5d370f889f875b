//! Group delta query: what changed in one group's direct membership since a stored `@odata.deltaLink`
//! [group-delta, delta-query-groups, delta-query-overview].
//!
//! - The first round is `GET /groups/delta?$filter=id eq '{id}'&$select=members`: it returns every current member
//!   as "added" and ends with a deltaLink. Query options go only on that first request.
//! - Later rounds start at the stored deltaLink (the whole URL) and list only changes: `members@delta` entries,
//!   removals carrying `@removed`. An empty page with a deltaLink means nothing changed.
//! - A round follows `@odata.nextLink` until the deltaLink; a large group's members are split over pages and the
//!   same group can appear several times, so entries are merged per member, later entries winning.
//! - An expired or unknown token answers `410 Gone` or a 4xx with `syncStateNotFound`/`resyncRequired`
//!   ([`GraphError::is_delta_token_expired`]): the caller restarts with a first round and reconciles in full.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;
use tracing::{debug, warn};

use super::client::GraphRequest;
use super::{GraphClient, GraphError, operation};
use crate::domain::{GroupId, UserId};

/// One delta round of one group, merged over its pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupDelta {
    /// Whether this was a first round (no deltaLink given): `added` then holds every current member.
    pub initial: bool,
    /// User members added (or, in a first round, present).
    pub added: BTreeSet<UserId>,
    /// User members removed (left the group, or deleted).
    pub removed: BTreeSet<UserId>,
    /// Members that are not users (groups, devices…) that were added or removed. With nested membership configured,
    /// a nested group joining or leaving changes the users of the pair in ways this round cannot list.
    pub non_user_changes: u64,
    /// The link to start the next round from.
    pub delta_link: String,
}

impl GroupDelta {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.non_user_changes == 0
    }
}

impl GraphClient {
    /// Runs one delta round for `group`: from `delta_link` when given, else a first round. Errors are the client's
    /// usual ones (retries, throttling and metrics included); check [`GraphError::is_delta_token_expired`].
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, group_id = %group, initial = delta_link.is_none()))]
    pub async fn group_delta(&self, group: &GroupId, delta_link: Option<&str>) -> Result<GroupDelta, GraphError> {
        let op = operation::GROUP_DELTA;
        let first = match delta_link {
            // A stored link carries the tenant's position: follow it only on this client's Graph host.
            Some(link) => self.next_link(op, link).map_err(|_| GraphError::Api {
                operation: op,
                status: 410,
                code: "resyncRequired".to_owned(),
                message: "the stored deltaLink is not a URL on this Graph endpoint; restarting with a full round"
                    .to_owned(),
                request_id: None,
                hint: None,
            })?,
            None => self.url("groups/delta", &[("$filter", &format!("id eq '{group}'")), ("$select", "members")])?,
        };
        let mut delta = GroupDelta { initial: delta_link.is_none(), ..GroupDelta::default() };
        let mut next = Some(first);
        let mut pages = 0u32;
        while let Some(url) = next.take() {
            pages += 1;
            let request = GraphRequest { method: Method::GET, url: url.clone(), body: None, eventual: false };
            let response = self.execute(op, &request).await?;
            let page: Value = serde_json::from_slice(&response.body).map_err(|error| GraphError::Decode {
                operation: op,
                detail: format!("the page is not JSON: {error}"),
            })?;
            let Some(Value::Array(groups)) = page.get("value") else {
                return Err(GraphError::Decode { operation: op, detail: "the page has no \"value\" array".to_owned() });
            };
            for entry in groups {
                let id = entry.get("id").and_then(Value::as_str).unwrap_or_default();
                if !id.eq_ignore_ascii_case(group.as_str()) {
                    warn!(other = id, "group delta returned a group that was not asked for; ignored");
                    continue;
                }
                merge_members(&mut delta, entry.get("members@delta"))?;
            }
            if let Some(link) = page.get("@odata.nextLink").and_then(Value::as_str) {
                let link = self.next_link(op, link)?;
                if link == url {
                    return Err(GraphError::Decode {
                        operation: op,
                        detail: "@odata.nextLink points to itself".to_owned(),
                    });
                }
                next = Some(link);
            } else if let Some(link) = page.get("@odata.deltaLink").and_then(Value::as_str) {
                self.next_link(op, link)?;
                delta.delta_link = link.to_owned();
            } else {
                return Err(GraphError::Decode {
                    operation: op,
                    detail: "a delta page has neither @odata.nextLink nor @odata.deltaLink".to_owned(),
                });
            }
        }
        debug!(
            pages,
            added = delta.added.len(),
            removed = delta.removed.len(),
            non_users = delta.non_user_changes,
            "read group changes"
        );
        Ok(delta)
    }
}

/// Folds one `members@delta` array into the round: the later entry about a member wins.
fn merge_members(delta: &mut GroupDelta, members: Option<&Value>) -> Result<(), GraphError> {
    let Some(Value::Array(members)) = members else { return Ok(()) };
    for member in members {
        let removed = member.get("@removed").is_some();
        let is_user = member
            .get("@odata.type")
            .and_then(Value::as_str)
            .is_none_or(|kind| kind.eq_ignore_ascii_case("#microsoft.graph.user"));
        if !is_user {
            delta.non_user_changes += 1;
            continue;
        }
        let Some(id) = member.get("id").and_then(Value::as_str) else { continue };
        let id = UserId::parse(id).map_err(|error| GraphError::Decode {
            operation: operation::GROUP_DELTA,
            detail: format!("a members@delta entry has an unusable id: {error}"),
        })?;
        if removed {
            delta.added.remove(&id);
            delta.removed.insert(id);
        } else {
            delta.removed.remove(&id);
            delta.added.insert(id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(n: u8) -> String {
        format!("00000000-0000-4000-8000-0000000000{n:02}")
    }

    #[test]
    fn pages_merge_per_member_with_the_later_entry_winning() {
        let mut delta = GroupDelta::default();
        let user = |n: u8| json!({"@odata.type": "#microsoft.graph.user", "id": id(n)});
        let gone =
            |n: u8| json!({"@odata.type": "#microsoft.graph.user", "id": id(n), "@removed": {"reason": "deleted"}});
        merge_members(&mut delta, Some(&json!([user(1), user(2), gone(3)]))).unwrap();
        merge_members(
            &mut delta,
            Some(&json!([gone(2), user(3), {"@odata.type": "#microsoft.graph.group", "id": id(9)}])),
        )
        .unwrap();
        let ids = |set: &BTreeSet<UserId>| set.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&delta.added), [id(1), id(3)]);
        assert_eq!(ids(&delta.removed), [id(2)]);
        assert_eq!(delta.non_user_changes, 1);
        assert!(!delta.is_empty());
        assert!(GroupDelta::default().is_empty());
    }
}
