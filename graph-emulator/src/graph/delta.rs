//! `GET /groups/delta` with `$filter=id eq '…' or …` and `$select=members`: `members@delta`, `@removed`,
//! `@odata.nextLink` / `@odata.deltaLink`, `$deltatoken=latest`, expiry after 7 days.
//! [group-delta] [delta-query-groups] [delta-query-overview]
//!
//! Every answer is a replay of the tenant's membership change log between two sequence numbers, collapsed per
//! (group, member): a full sync replays from 0 and keeps only present members. Paging over that replay is stable
//! even when membership changes between pages (the changes are in the next round).

use std::collections::{HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::GraphError;
use super::{Ctx, Success};
use crate::directory::{ObjectKind, TenantData};
use crate::options::DeltaExpiry;

/// At most 50 ids in the `$filter`. [group-delta]
pub(crate) const MAX_FILTER_IDS: usize = 50;
/// Member entries per page: the page size is the server's choice. [delta-query-overview]
pub(crate) const PAGE_ENTRIES: usize = 200;
/// Directory delta tokens live 7 days. [delta-query-overview]
const TOKEN_LIFETIME_SECS: i64 = 7 * 24 * 3600;

/// What a `$skiptoken` / `$deltatoken` carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeltaState {
    /// Tenant.
    t: String,
    /// Group filter (`None`: every group).
    g: Option<Vec<String>>,
    /// Whether members are returned.
    m: bool,
    /// Whether displayName is returned.
    d: bool,
    /// Changes after this sequence number...
    s: u64,
    /// ...up to this one (0 in a deltaLink: "up to now" when used).
    u: u64,
    /// Position in the replay (nextLink).
    o: usize,
    /// Issued at (emulator clock, unix milliseconds: a token issued just after `expire_delta_tokens` in the same
    /// second must stay valid).
    i: i64,
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn encode(state: &DeltaState) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(state).unwrap_or_default())
}

fn decode(token: &str) -> Option<DeltaState> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.trim()).ok()?).ok()
}

fn unsupported(message: &str) -> GraphError {
    GraphError::bad_request("Request_UnsupportedQuery", message)
}

/// Parses `id eq 'a' or id eq 'b'`.
fn parse_id_filter(filter: &str) -> Result<Vec<String>, GraphError> {
    let mut ids = Vec::new();
    for clause in split_or(filter) {
        let clause = clause.trim();
        let rest = clause
            .strip_prefix("id")
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix("eq"))
            .map(str::trim)
            .ok_or_else(|| unsupported("Groups delta supports only a filter on id: id eq '{id}' or id eq '{id}'."))?;
        let value = rest
            .strip_prefix('\'')
            .and_then(|r| r.strip_suffix('\''))
            .ok_or_else(|| unsupported("Invalid filter clause."))?;
        ids.push(value.replace("''", "'"));
    }
    if ids.len() > MAX_FILTER_IDS {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            format!("The filter holds {} ids; at most {MAX_FILTER_IDS} are supported.", ids.len()),
        ));
    }
    Ok(ids)
}

/// Splits on ` or ` outside quotes.
fn split_or(filter: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quote = false;
    let mut start = 0;
    let bytes = filter.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            in_quote = !in_quote;
        } else if !in_quote && filter[i..].to_ascii_lowercase().starts_with(" or ") {
            parts.push(&filter[start..i]);
            i += 4;
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&filter[start..]);
    parts
}

fn expired(ctx: &Ctx<'_>, restart_query: &str) -> GraphError {
    match ctx.state.directory.delta_expiry() {
        DeltaExpiry::Gone410 => GraphError::new(
            axum::http::StatusCode::GONE,
            "resyncRequired",
            "The delta token has expired or is invalid. Restart with a full synchronization from the Location.",
        )
        .with_header("location", ctx.req.link(restart_query)),
        DeltaExpiry::SyncStateNotFound => GraphError::bad_request(
            "syncStateNotFound",
            "The sync state of the delta token was not found. Restart with a full synchronization.",
        ),
        DeltaExpiry::ResyncRequired => {
            GraphError::bad_request("resyncRequired", "Resync required. Restart with a full synchronization.")
        }
    }
}

/// One collapsed member change.
struct Entry<'a> {
    group: &'a str,
    member: &'a str,
    kind: ObjectKind,
    present: bool,
}

/// The collapsed replay of changes in `(since, upto]` for the filtered groups, groups in filter order, members in
/// order of first change. A full sync (`since == 0`) keeps present members only.
fn replay<'a>(data: &'a TenantData, groups: &[&'a str], since: u64, upto: u64) -> Vec<Entry<'a>> {
    let wanted: HashSet<&str> = groups.iter().copied().collect();
    let start = data.changes.partition_point(|c| c.seq <= since);
    let mut per_group: HashMap<&str, Vec<Entry<'a>>> = HashMap::new();
    let mut position: HashMap<(&str, &str), usize> = HashMap::new();
    for change in data.changes[start..].iter().take_while(|c| c.seq <= upto) {
        if !wanted.contains(change.group_id.as_str()) {
            continue;
        }
        let key = (change.group_id.as_str(), change.member_id.as_str());
        let entries = per_group.entry(change.group_id.as_str()).or_default();
        match position.get(&key) {
            Some(&i) => entries[i].present = change.added,
            None => {
                position.insert(key, entries.len());
                entries.push(Entry {
                    group: change.group_id.as_str(),
                    member: change.member_id.as_str(),
                    kind: change.member_kind,
                    present: change.added,
                });
            }
        }
    }
    let mut out = Vec::new();
    for group in groups {
        if let Some(entries) = per_group.remove(group) {
            out.extend(entries.into_iter().filter(|e| since > 0 || e.present));
        }
    }
    out
}

pub(crate) fn groups_delta(ctx: &Ctx<'_>) -> Result<Success, GraphError> {
    let q = ctx.query;
    if q.top.is_some() || q.expand.is_some() || q.pairs.iter().any(|(k, _)| k.eq_ignore_ascii_case("$orderby")) {
        // [delta-query-overview] $top, $expand and $orderby are not supported on delta.
        return Err(unsupported("$top, $expand and $orderby are not supported with delta query."));
    }
    let data = ctx.tenant.read();
    let now = unix_ms(ctx.state.directory.now());
    let current = data.next_seq;
    let tenant_id = ctx.claims.tid.as_str();
    let token = q.skiptoken.as_deref().or(q.deltatoken.as_deref());

    let state = match token {
        Some("latest") if q.deltatoken.is_some() => None,
        Some(token) => {
            let restart = restart_query(decode(token).as_ref());
            let Some(mut state) = decode(token) else {
                return Err(expired(ctx, &restart));
            };
            let watermark = ctx.state.directory.delta_watermark(tenant_id).map(unix_ms);
            if state.t != tenant_id
                || now - state.i > TOKEN_LIFETIME_SECS * 1000
                || watermark.is_some_and(|w| state.i <= w)
            {
                return Err(expired(ctx, &restart));
            }
            if q.deltatoken.is_some() {
                // A deltaLink: changes since its sequence number, up to now.
                state.u = current;
                state.o = 0;
            }
            Some(state)
        }
        None => None,
    };
    let state = match state {
        Some(state) => state,
        None => {
            let groups = q.filter.as_deref().map(parse_id_filter).transpose()?;
            let select: Option<Vec<String>> = q.select.clone();
            let members = select.as_ref().is_none_or(|s| s.iter().any(|p| p.eq_ignore_ascii_case("members")));
            let display_name = select.as_ref().is_none_or(|s| s.iter().any(|p| p.eq_ignore_ascii_case("displayName")));
            let latest = q.deltatoken.as_deref() == Some("latest");
            let state = DeltaState {
                t: tenant_id.to_owned(),
                g: groups,
                m: members,
                d: display_name,
                s: if latest { current } else { 0 },
                u: current,
                o: 0,
                i: now,
            };
            if latest {
                // [delta-query-overview] $deltatoken=latest: a deltaLink, no data.
                let link = ctx.req.link(&format!("$deltatoken={}", encode(&state)));
                return Ok(Success::json(&json!({
                    "@odata.context": ctx.req.context("groups"),
                    "@odata.deltaLink": link,
                    "value": [],
                })));
            }
            state
        }
    };

    let mut group_ids: Vec<&str> = match &state.g {
        Some(ids) => ids.iter().map(String::as_str).filter(|id| data.groups.contains_key(*id)).collect(),
        None => data.groups.keys().map(String::as_str).collect(),
    };
    if state.g.is_none() {
        group_ids.sort_unstable();
    }
    let entries = if state.m { replay(&data, &group_ids, state.s, state.u) } else { Vec::new() };
    let full_sync = state.s == 0;
    let end = (state.o + PAGE_ENTRIES).min(entries.len());
    let page = &entries[state.o.min(end)..end];

    let mut value: Vec<Value> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let group_object = |id: &str| {
        let mut object = Map::new();
        object.insert("id".into(), Value::String(id.to_owned()));
        if state.d {
            let name = data.groups.get(id).map(|g| g.display_name.clone());
            object.insert("displayName".into(), name.map(Value::String).unwrap_or(Value::Null));
        }
        if state.m {
            object.insert("members@delta".into(), Value::Array(Vec::new()));
        }
        object
    };
    // The first page of a full sync lists every group, even those without members.
    if full_sync && state.o == 0 {
        for id in &group_ids {
            index.insert(id, value.len());
            value.push(Value::Object(group_object(id)));
        }
    }
    for entry in page {
        let i = *index.entry(entry.group).or_insert_with(|| {
            value.push(Value::Object(group_object(entry.group)));
            value.len() - 1
        });
        let mut member = Map::new();
        member.insert("@odata.type".into(), Value::String(entry.kind.odata_type().to_owned()));
        member.insert("id".into(), Value::String(entry.member.to_owned()));
        if !entry.present {
            member.insert("@removed".into(), json!({"reason": "deleted"}));
        }
        if let Some(Value::Array(list)) = value[i].get_mut("members@delta") {
            list.push(Value::Object(member));
        }
    }
    let mut body = Map::new();
    body.insert("@odata.context".into(), Value::String(ctx.req.context("groups")));
    if end < entries.len() {
        let next = DeltaState { o: end, ..state.clone() };
        body.insert("@odata.nextLink".into(), Value::String(ctx.req.link(&format!("$skiptoken={}", encode(&next)))));
    } else {
        let delta = DeltaState { s: state.u, u: 0, o: 0, i: now, ..state.clone() };
        body.insert("@odata.deltaLink".into(), Value::String(ctx.req.link(&format!("$deltatoken={}", encode(&delta)))));
    }
    body.insert("value".into(), Value::Array(value));
    Ok(Success::json(&Value::Object(body)))
}

/// The first request again (filter and select), for the `Location` of a `410 Gone`.
fn restart_query(state: Option<&DeltaState>) -> String {
    let Some(state) = state else {
        return String::new();
    };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(ids) = &state.g {
        let filter: Vec<String> = ids.iter().map(|id| format!("id eq '{}'", id.replace('\'', "''"))).collect();
        query.append_pair("$filter", &filter.join(" or "));
    }
    let mut select = Vec::new();
    if state.d {
        select.push("displayName");
    }
    if state.m {
        select.push("members");
    }
    query.append_pair("$select", &select.join(","));
    query.finish().replace("%24", "$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_filters_parse_and_are_capped_at_50() {
        assert_eq!(parse_id_filter("id eq 'a' or id eq 'b'").unwrap(), ["a", "b"]);
        assert_eq!(parse_id_filter("id eq 'o''x'").unwrap(), ["o'x"]);
        let many: Vec<String> = (0..51).map(|i| format!("id eq '{i}'")).collect();
        assert!(parse_id_filter(&many.join(" or ")).is_err());
        assert!(parse_id_filter("displayName eq 'x'").is_err());
    }
}
