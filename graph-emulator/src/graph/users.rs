//! `GET /users`, `GET /users/{id | userPrincipalName}`, `PATCH /users/{id}`.
//! [user-list] [user-get] [user-update] [concept-certificate-based-authentication-certificateuserids]

use std::collections::HashSet;

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq};
use serde_json::Value;

use super::error::GraphError;
use super::query::{UserFilter, UserProperty, decode_skiptoken, encode_skiptoken, is_eventual, parse_user_filter};
use super::view::{Selection, UserView};
use super::{Ctx, Success};
use crate::directory::lock;
use crate::model::UserRecord;

/// At most 10 values, each at most 1,024 characters. [concept-certificate-based-authentication-certificateuserids]
pub(crate) const MAX_CERTIFICATE_USER_IDS: usize = 10;
pub(crate) const MAX_CERTIFICATE_USER_ID_LEN: usize = 1024;

const ON_PREMISES_MESSAGE: &str = "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.";
const CONFLICT_MESSAGE: &str = "Another object with the same value for property certificateUserIds already exists.";

fn invalid_value(property: &str) -> GraphError {
    GraphError::bad_request(
        "Request_BadRequest",
        format!("Invalid value specified for property '{property}' of resource 'User'."),
    )
}

pub(super) fn list(ctx: &Ctx<'_>) -> Result<Success, GraphError> {
    let eventual = is_eventual(&ctx.req.headers);
    let filter = ctx.query.filter.as_deref().map(parse_user_filter).transpose()?;
    if ctx.query.count && !eventual {
        return Err(GraphError::bad_request(
            "Request_BadRequest",
            "$count is only supported with the header 'ConsistencyLevel: eventual'.",
        ));
    }
    if matches!(filter, Some(UserFilter::CertificateUserId(_))) && !(eventual && ctx.query.count) {
        // [concept-certificate-based-authentication-certificateuserids] the lookup is an advanced query.
        return Err(GraphError::bad_request(
            "Request_UnsupportedQuery",
            "Unsupported or invalid query filter clause specified for property 'certificateUserIds' of resource 'User'.",
        ));
    }
    let page_size = ctx.query.page_size()?;
    let selection = Selection::parse(ctx.query.select.as_deref(), "microsoft.graph.user", false)?;
    let data = ctx.tenant.read();
    let scope = format!("users|{}", ctx.query.filter.as_deref().unwrap_or(""));
    let after = ctx.query.skiptoken.as_deref().map(|t| decode_skiptoken(&scope, t)).transpose()?;

    let (page, more, count): (Vec<&UserRecord>, bool, usize) = match &filter {
        None => {
            let mut iter: Box<dyn Iterator<Item = (&String, &UserRecord)>> = match &after {
                Some(last) => Box::new(
                    data.users.range::<str, _>((std::ops::Bound::Excluded(last.as_str()), std::ops::Bound::Unbounded)),
                ),
                None => Box::new(data.users.iter()),
            };
            let page: Vec<&UserRecord> = iter.by_ref().take(page_size).map(|(_, u)| u).collect();
            let more = iter.next().is_some();
            (page, more, data.users.len())
        }
        Some(filter) => {
            let ids: Vec<&String> = match filter {
                UserFilter::CertificateUserId(value) => {
                    data.by_certificate_user_id.get(value).map(|v| v.iter().collect()).unwrap_or_default()
                }
                UserFilter::Eq(UserProperty::Id, value) => {
                    data.users.get_key_value(value).map(|(k, _)| vec![k]).unwrap_or_default()
                }
                UserFilter::Eq(property, value) => {
                    let index = match property {
                        UserProperty::UserPrincipalName => &data.by_upn,
                        UserProperty::Mail => &data.by_mail,
                        UserProperty::EmployeeId => &data.by_employee_id,
                        UserProperty::OnPremisesSamAccountName | UserProperty::Id => &data.by_sam,
                    };
                    index.get(&value.to_lowercase()).map(|v| v.iter().collect()).unwrap_or_default()
                }
            };
            let mut users: Vec<&UserRecord> = ids.iter().filter_map(|id| data.users.get(*id)).collect();
            users.sort_by(|a, b| a.id.cmp(&b.id));
            let count = users.len();
            let start = match &after {
                Some(last) => users.partition_point(|u| u.id.as_str() <= last.as_str()),
                None => 0,
            };
            let rest = &users[start..];
            let page: Vec<&UserRecord> = rest.iter().take(page_size).copied().collect();
            (page, rest.len() > page_size, count)
        }
    };
    let next_link = match (more, page.last()) {
        (true, Some(last)) => Some(ctx.req.link(&ctx.query.with_skiptoken(&encode_skiptoken(&scope, &last.id)))),
        _ => None,
    };
    let body = UserPage {
        context: ctx.req.context("users"),
        count: ctx.query.count.then_some(count),
        next_link,
        users: &page,
        selection: &selection,
    };
    Ok(Success::json_bytes(serde_json::to_vec(&body).unwrap_or_default()))
}

struct UserPage<'a> {
    context: String,
    count: Option<usize>,
    next_link: Option<String>,
    users: &'a [&'a UserRecord],
    selection: &'a Selection,
}

struct UserItems<'a>(&'a [&'a UserRecord], &'a Selection);

impl Serialize for UserItems<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for user in self.0 {
            seq.serialize_element(&UserView { user, selection: self.1, context: None, odd: None })?;
        }
        seq.end()
    }
}

impl Serialize for UserPage<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("@odata.context", &self.context)?;
        if let Some(count) = self.count {
            map.serialize_entry("@odata.count", &count)?;
        }
        if let Some(link) = &self.next_link {
            map.serialize_entry("@odata.nextLink", link)?;
        }
        map.serialize_entry("value", &UserItems(self.users, self.selection))?;
        map.end()
    }
}

pub(super) fn get(ctx: &Ctx<'_>, id: &str) -> Result<Success, GraphError> {
    let selection = Selection::parse(ctx.query.select.as_deref(), "microsoft.graph.user", false)?;
    let data = ctx.tenant.read();
    let user = data.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    let context = ctx.req.context("users/$entity");
    let odd = lock(&ctx.state.faults).odd_answers();
    if odd.as_ref().is_some_and(|odd| odd.authorization_info.contains_key(&user.id)) {
        lock(&ctx.state.faults).served_odd(1);
    }
    Ok(Success::json(&UserView { user, selection: &selection, context: Some(&context), odd: odd.as_ref() }))
}

/// A validated PATCH: what to set.
#[derive(Default)]
struct UserPatch {
    certificate_user_ids: Option<Vec<String>>,
    display_name: Option<Option<String>>,
    mail: Option<Option<String>>,
    employee_id: Option<Option<String>>,
    extensions: Vec<(String, Option<String>)>,
}

fn optional_string(value: &Value, property: &str) -> Result<Option<String>, GraphError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(invalid_value(property)),
    }
}

fn parse_patch(body: &[u8]) -> Result<UserPatch, GraphError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        GraphError::bad_request("BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.")
    })?;
    let Value::Object(object) = value else {
        return Err(GraphError::bad_request("BadRequest", "The request payload must be a JSON object."));
    };
    let mut patch = UserPatch::default();
    for (key, value) in &object {
        match key.as_str() {
            "authorizationInfo" => {
                let Value::Object(info) = value else {
                    return Err(invalid_value("authorizationInfo"));
                };
                for (k, v) in info {
                    if k != "certificateUserIds" {
                        return Err(GraphError::bad_request(
                            "Request_BadRequest",
                            format!("Property '{k}' does not exist as a declared property or extension property."),
                        ));
                    }
                    let Value::Array(items) = v else {
                        return Err(invalid_value("certificateUserIds"));
                    };
                    let mut values = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            Value::String(s) => values.push(s.clone()),
                            _ => return Err(invalid_value("certificateUserIds")),
                        }
                    }
                    patch.certificate_user_ids = Some(values);
                }
            }
            "displayName" => patch.display_name = Some(optional_string(value, key)?),
            "mail" => patch.mail = Some(optional_string(value, key)?),
            "employeeId" => patch.employee_id = Some(optional_string(value, key)?),
            k if k.starts_with("extension_") => patch.extensions.push((k.to_owned(), optional_string(value, k)?)),
            "id" | "userPrincipalName" | "onPremisesSyncEnabled" | "onPremisesSamAccountName" => {
                return Err(GraphError::bad_request(
                    "Request_BadRequest",
                    format!("Property '{key}' is read-only and cannot be set."),
                ));
            }
            _ => {
                return Err(GraphError::bad_request(
                    "Request_BadRequest",
                    format!("Property '{key}' does not exist as a declared property or extension property."),
                ));
            }
        }
    }
    Ok(patch)
}

/// `PATCH /users/{id}`: `authorizationInfo.certificateUserIds` replaces the whole collection. [user-update]
pub(super) fn patch(ctx: &Ctx<'_>, id: &str) -> Result<Success, GraphError> {
    let patch = parse_patch(&ctx.req.body)?;
    let mut data = ctx.tenant.write();
    let user = data.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    let user_id = user.id.clone();
    let synced = user.on_premises_sync_enabled == Some(true);
    // On-premises mastered attributes of synced users are written by Entra Connect only.
    if synced
        && (patch.certificate_user_ids.is_some()
            || patch.display_name.is_some()
            || patch.mail.is_some()
            || patch.employee_id.is_some())
    {
        return Err(GraphError::bad_request("Request_BadRequest", ON_PREMISES_MESSAGE));
    }
    if let Some(values) = &patch.certificate_user_ids {
        // [concept-certificate-based-authentication-certificateuserids] limits and uniqueness in the tenant.
        if values.len() > MAX_CERTIFICATE_USER_IDS {
            return Err(invalid_value("certificateUserIds"));
        }
        if values.iter().any(|v| v.is_empty() || v.chars().count() > MAX_CERTIFICATE_USER_ID_LEN) {
            return Err(invalid_value("certificateUserIds"));
        }
        let mut distinct = HashSet::with_capacity(values.len());
        if !values.iter().all(|v| distinct.insert(v.as_str())) {
            return Err(invalid_value("certificateUserIds"));
        }
        for value in values {
            if data.by_certificate_user_id.get(value).is_some_and(|holders| holders.iter().any(|h| *h != user_id)) {
                return Err(GraphError::bad_request("Request_BadRequest", CONFLICT_MESSAGE));
            }
        }
    }
    data.edit_user(&user_id, |user| {
        if let Some(values) = patch.certificate_user_ids {
            user.certificate_user_ids = values;
        }
        if let Some(v) = patch.display_name {
            user.display_name = v;
        }
        if let Some(v) = patch.mail {
            user.mail = v;
        }
        if let Some(v) = patch.employee_id {
            user.employee_id = v;
        }
        for (name, value) in patch.extensions {
            match value {
                Some(v) => {
                    user.extensions.insert(name, v);
                }
                None => {
                    user.extensions.remove(&name);
                }
            }
        }
    });
    Ok(Success::no_content())
}
