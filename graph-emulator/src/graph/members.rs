//! `GET /groups/{id}/members` and `/transitiveMembers`, with casts, `$count`, `$select`, `$top` and paging.
//! [group-list-members] [group-list-transitivemembers] [aad-advanced-queries] [paging]

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq};

use super::error::GraphError;
use super::query::{encode_skiptoken, is_eventual, skiptoken_position};
use super::view::{MemberView, Readable, Selection};
use super::{Ctx, ResponseBody, Success};
use crate::directory::{ObjectKind, TenantData, lock};
use crate::options::OddAnswers;

/// Every member reachable from a group, nested groups included, each once, breadth first.
pub(crate) fn transitive_members(data: &TenantData, group_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut visited: HashSet<&str> = HashSet::from([group_id]);
    let mut queue: VecDeque<&str> = VecDeque::from([group_id]);
    while let Some(g) = queue.pop_front() {
        let Some(group) = data.groups.get(g) else { continue };
        for member in &group.members {
            if seen.insert(member.as_str()) {
                out.push(member.clone());
                if data.objects.get(member) == Some(&ObjectKind::Group) && visited.insert(member.as_str()) {
                    queue.push_back(member.as_str());
                }
            }
        }
    }
    out
}

fn advanced_query_required(what: &str) -> GraphError {
    // [aad-advanced-queries] casts and $count need ConsistencyLevel: eventual.
    GraphError::bad_request(
        "Request_BadRequest",
        format!(
            "{what} is only supported with advanced query parameters: add the header 'ConsistencyLevel: eventual' and '$count=true'."
        ),
    )
}

pub(super) fn list(
    ctx: &Ctx<'_>,
    group_id: &str,
    transitive: bool,
    cast: Option<ObjectKind>,
    count_only: bool,
) -> Result<Success, GraphError> {
    let eventual = is_eventual(&ctx.req.headers);
    if count_only && !eventual {
        return Err(advanced_query_required("$count"));
    }
    if ctx.query.count && !eventual {
        return Err(advanced_query_required("$count"));
    }
    if cast.is_some() && !eventual {
        return Err(advanced_query_required("OData cast"));
    }
    if let Some((option, _)) = ctx
        .query
        .pairs
        .iter()
        .find(|(k, _)| ["$filter", "$orderby", "$search"].iter().any(|o| k.eq_ignore_ascii_case(o)))
    {
        // TODO-completeness: Graph supports these as advanced queries; the emulator refuses rather than ignore them.
        return Err(GraphError::bad_request(
            "Request_UnsupportedQuery",
            format!("The emulator does not support {option} on member listings."),
        ));
    }
    let page_size = ctx.query.page_size()?;
    let selection = match cast {
        Some(ObjectKind::User) => Selection::parse(ctx.query.select.as_deref(), "microsoft.graph.user", false)?,
        _ => Selection::parse(ctx.query.select.as_deref(), "microsoft.graph.directoryObject", true)?,
    };
    let data = ctx.tenant.read();
    let Some(group) = data.groups.get(group_id) else {
        return Err(GraphError::not_found(group_id));
    };
    let list: Cow<'_, [String]> =
        if transitive { Cow::Owned(transitive_members(&data, group_id)) } else { Cow::Borrowed(&group.members) };
    let kind_of = |id: &str| data.objects.get(id).copied();
    let matches = |id: &str| cast.is_none_or(|k| kind_of(id) == Some(k));
    let listing = format!("{group_id}|{transitive}|{cast:?}");
    let count_all = || ctx.tenant.count_once(&listing, || list.iter().filter(|id| matches(id)).count());
    if count_only {
        let count = count_all();
        return Ok(Success {
            status: axum::http::StatusCode::OK,
            body: ResponseBody::Text(count.to_string()),
            headers: Vec::new(),
        });
    }

    // The skiptoken is a position in the unfiltered listing, so a cast page costs O(page), not O(offset).
    let scope = ctx.req.path.as_str();
    let start = skiptoken_position(ctx.query, scope)?;
    let mut page: Vec<(&str, ObjectKind)> = Vec::with_capacity(page_size.min(list.len()));
    let mut position = start;
    while position < list.len() && page.len() < page_size {
        let id = list[position].as_str();
        position += 1;
        if let Some(kind) = kind_of(id)
            && cast.is_none_or(|k| k == kind)
        {
            page.push((id, kind));
        }
    }
    let odd = lock(&ctx.state.faults).odd_answers();
    if let Some(odd) = &odd {
        let mut served = 0;
        if odd.short_member_pages
            && let Some(last) = page.iter().rposition(|(_, kind)| *kind == ObjectKind::User)
        {
            page.remove(last);
            served += 1;
        }
        served += usize::from(odd.malformed_next_link);
        served += page
            .iter()
            .filter(|(id, kind)| {
                *kind == ObjectKind::User && (odd.members_without_fields || odd.authorization_info.contains_key(*id))
            })
            .count();
        lock(&ctx.state.faults).served_odd(served);
    }
    let rest = &list[position.min(list.len())..];
    let more = if cast.is_none() { !rest.is_empty() } else { rest.iter().any(|id| matches(id)) };
    let next_link =
        more.then(|| ctx.req.link(&ctx.query.with_skiptoken(&encode_skiptoken(scope, &position.to_string()))));
    let count = ctx.query.count.then(count_all);
    let fragment = match cast {
        Some(ObjectKind::User) => "users",
        Some(ObjectKind::Group) => "groups",
        Some(ObjectKind::Device) => "devices",
        Some(ObjectKind::ServicePrincipal) => "servicePrincipals",
        None => "directoryObjects",
    };
    let readable = Readable::from_roles(&ctx.claims.roles);
    let body = Page {
        context: ctx.req.context(fragment),
        count,
        next_link,
        data: &data,
        items: &page,
        selection: &selection,
        readable,
        odd: odd.as_ref(),
    };
    Ok(Success::json_bytes(serde_json::to_vec(&body).unwrap_or_default()))
}

struct Page<'a> {
    context: String,
    count: Option<usize>,
    next_link: Option<String>,
    data: &'a TenantData,
    items: &'a [(&'a str, ObjectKind)],
    selection: &'a Selection,
    readable: Readable,
    odd: Option<&'a OddAnswers>,
}

struct Items<'a>(&'a Page<'a>);

impl Serialize for Items<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let page = self.0;
        let mut seq = serializer.serialize_seq(Some(page.items.len()))?;
        for (id, kind) in page.items {
            seq.serialize_element(&MemberView {
                data: page.data,
                id,
                kind: *kind,
                selection: page.selection,
                readable: page.readable,
                odd: page.odd,
            })?;
        }
        seq.end()
    }
}

impl Serialize for Page<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("@odata.context", &self.context)?;
        if let Some(count) = self.count {
            map.serialize_entry("@odata.count", &count)?;
        }
        if self.odd.is_some_and(|odd| odd.malformed_next_link) {
            map.serialize_entry("@odata.nextLink", &1)?;
        } else if let Some(link) = &self.next_link {
            map.serialize_entry("@odata.nextLink", link)?;
        }
        map.serialize_entry("value", &Items(self))?;
        map.end()
    }
}

/// `GET /groups/{id}`. [group-get]
pub(super) fn get_group(ctx: &Ctx<'_>, group_id: &str) -> Result<Success, GraphError> {
    let data = ctx.tenant.read();
    let group = data.groups.get(group_id).ok_or_else(|| GraphError::not_found(group_id))?;
    Ok(Success::json(&serde_json::json!({
        "@odata.context": ctx.req.context("groups/$entity"),
        "id": group_id,
        "displayName": group.display_name,
        "securityEnabled": true,
        "mailEnabled": false,
        "groupTypes": [],
    })))
}
