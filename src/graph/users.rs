//! The user as this project reads it from Graph, the user calls (members of a group, users by id, the
//! certificateUserIds write), and the tolerant parsing of users: Graph omits unselected and null
//! properties, and a member the app may not read comes back with only `@odata.type` and `id` [group-list-members].

use std::collections::BTreeMap;

use serde::de;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use tracing::debug;

use super::batch::{BatchBody, BatchItem, BatchRequest, WriteReservation};
use super::client::{GraphClient, encode};
use super::error::{GraphError, operation};
use super::json::{Key, Lenient, LenientTarget};
use crate::domain::{AttributeSource, GroupId, UserId};

/// The properties every read asks for. `authorizationInfo` only comes back when selected [group-list-members].
pub const USER_SELECT: &[&str] = &[
    "id",
    "userPrincipalName",
    "mail",
    "employeeId",
    "onPremisesSamAccountName",
    "onPremisesSyncEnabled",
    "authorizationInfo",
];

/// What writing a Tenant B user depends on: who it is, whether it is synchronized from on-premises (then only Entra
/// Connect may write it), and its certificateUserIds. Member reads of Tenant B add only the match key to this: every
/// other property would be read, parsed and held for each member and never used.
pub const TARGET_SELECT: &[&str] = &["id", "userPrincipalName", "onPremisesSyncEnabled", "authorizationInfo"];

/// A user's creation time [user resource type: "createdDateTime … read-only"; null when it could not be determined].
/// Read on Tenant A users when a pair binds connector certificates, which name their user by UPN only.
pub const CREATED_DATE_TIME: &str = "createdDateTime";

/// Properties [`DirectoryUser`] needs whatever the caller selects.
pub(crate) const REQUIRED_SELECT: &[&str] = &["id", "userPrincipalName"];

/// A user of either tenant. One is held per member of every group of a run (200,000 at 100,000 users per tenant), so
/// what most reads do not select lives in a box that is only there when it holds something (BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    pub id: UserId,
    pub user_principal_name: String,
    pub on_premises_sync_enabled: Option<bool>,
    /// `authorizationInfo.certificateUserIds`; empty when not read (see `certificate_user_ids_unknown`).
    pub certificate_user_ids: Vec<String>,
    /// The answer had no `authorizationInfo.certificateUserIds` array of strings (absent, null, another type, an
    /// item that is not a string): what the user holds is not known, so the user must not be written, since a write
    /// replaces the whole list. Always so for a read that did not select `authorizationInfo`.
    #[serde(default)]
    pub certificate_user_ids_unknown: bool,
    /// The other selected properties that have a value; `None` when none has.
    pub attributes: Option<Box<UserAttributes>>,
}

/// The properties a match key or a template may read besides the UPN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAttributes {
    pub mail: Option<String>,
    pub employee_id: Option<String>,
    pub on_premises_sam_account_name: Option<String>,
    /// Every other string property that was selected (e.g. `extension_<appid>_attr`, `displayName`).
    pub extensions: BTreeMap<String, String>,
}

impl UserAttributes {
    fn is_empty(&self) -> bool {
        self.mail.is_none()
            && self.employee_id.is_none()
            && self.on_premises_sam_account_name.is_none()
            && self.extensions.is_empty()
    }
}

impl DirectoryUser {
    pub fn mail(&self) -> Option<&str> {
        self.attributes.as_ref()?.mail.as_deref()
    }

    pub fn employee_id(&self) -> Option<&str> {
        self.attributes.as_ref()?.employee_id.as_deref()
    }

    pub fn on_premises_sam_account_name(&self) -> Option<&str> {
        self.attributes.as_ref()?.on_premises_sam_account_name.as_deref()
    }

    /// A selected property other than the named ones (an extension attribute, `displayName`…).
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.attributes.as_ref()?.extensions.get(name).map(String::as_str)
    }

    /// `createdDateTime` when it was selected and Graph knew it (an unparsable one counts as unknown).
    pub fn created(&self) -> Option<time::OffsetDateTime> {
        let text = self.extension(CREATED_DATE_TIME)?;
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
    }

    /// The attributes, to set one (fixtures and tests).
    pub fn attributes_mut(&mut self) -> &mut UserAttributes {
        self.attributes.get_or_insert_default()
    }
}

/// How match keys and templates read a user (`crate::domain::Attribute`): the properties held by name, and any other
/// selected one from `UserAttributes::extensions`, where the reader puts every property it does not know.
impl AttributeSource for DirectoryUser {
    fn property(&self, name: &str) -> Option<&str> {
        match name {
            "userPrincipalName" => Some(&self.user_principal_name),
            "mail" => self.mail(),
            "employeeId" => self.employee_id(),
            "onPremisesSamAccountName" => self.on_premises_sam_account_name(),
            other => DirectoryUser::extension(self, other),
        }
    }

    fn extension(&self, name: &str) -> Option<&str> {
        DirectoryUser::extension(self, name)
    }
}

/// Members of a group as read through the `microsoft.graph.user` cast.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupMembers {
    pub users: Vec<DirectoryUser>,
    /// Members that are not users (devices, groups, service principals, contacts…), counted, never read
    /// [group-list-members].
    pub non_user_members: u64,
}

/// Direct members, or the flattened nested set [group-list-members].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MembershipScope {
    #[default]
    Direct,
    Transitive,
}

impl MembershipScope {
    pub(crate) fn segment(self) -> &'static str {
        match self {
            MembershipScope::Direct => "members",
            MembershipScope::Transitive => "transitiveMembers",
        }
    }
}

impl DirectoryUser {
    /// Reads a user object as Graph returns it. Errors say what is missing; the caller decides whether that is fatal.
    pub fn from_graph_json(value: &Value) -> Result<Self, String> {
        match RawUser::deserialize(value) {
            Ok(raw) => raw.into_user(),
            // `&Value` never fails to deserialize as a `RawUser` (every shape is accepted, see `RawUser`).
            Err(error) => Err(error.to_string()),
        }
    }
}

/// One item of a member page, read straight from the page's bytes: no `serde_json::Value` tree per member.
///
/// A page of 999 members held as `Value`s weighs about 2 MB (one B-tree node per object and per nested object,
/// one heap string per key); held as [`DirectoryUser`]s it weighs a tenth of that. At 100,000 members per group
/// that is the difference between a run that fits in 100 MB and one that does not.
#[derive(Debug)]
pub(crate) enum Member {
    User(DirectoryUser),
    /// `@odata.type` names something else (device, group, service principal, contact…) [group-list-members].
    NotAUser,
    /// A user without a usable `id` or `userPrincipalName`, or not an object at all: why.
    Unreadable(String),
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawUser::deserialize(deserializer)?;
        let odata_type = raw.odata_type.as_deref();
        if odata_type.is_some_and(|kind| !kind.eq_ignore_ascii_case("#microsoft.graph.user")) {
            return Ok(Member::NotAUser);
        }
        Ok(match raw.into_user() {
            Ok(user) => Member::User(user),
            Err(reason) => Member::Unreadable(reason),
        })
    }
}

/// A user object's properties as they came, before the checks of [`RawUser::into_user`]. Tolerant like Graph's
/// readers must be: a property of an unexpected type counts as absent, a value that is not a JSON object is
/// remembered as such, and nothing here fails on shape (only on JSON that is not JSON).
#[derive(Debug, Default)]
struct RawUser {
    not_an_object: bool,
    odata_type: Option<String>,
    id: Option<String>,
    user_principal_name: Option<String>,
    mail: Option<String>,
    employee_id: Option<String>,
    on_premises_sam_account_name: Option<String>,
    on_premises_sync_enabled: Option<bool>,
    /// `None`: not there as documented (an object holding a `certificateUserIds` array of strings).
    certificate_user_ids: Option<Vec<String>>,
    extensions: BTreeMap<String, String>,
}

impl RawUser {
    fn into_user(self) -> Result<DirectoryUser, String> {
        if self.not_an_object {
            return Err("the user is not a JSON object".to_owned());
        }
        let raw_id = self.id.ok_or("the user has no id")?;
        let id = UserId::parse(&raw_id).map_err(|error| error.to_string())?;
        let user_principal_name = self
            .user_principal_name
            .filter(|upn| !upn.is_empty())
            .ok_or_else(|| format!("user {id} has no userPrincipalName (was it selected, and may the app read it?)"))?;
        let certificate_user_ids_unknown = self.certificate_user_ids.is_none();
        let mut certificate_user_ids = self.certificate_user_ids.unwrap_or_default();
        // Most users hold one value: do not keep room for four.
        certificate_user_ids.shrink_to_fit();
        let attributes = UserAttributes {
            mail: self.mail,
            employee_id: self.employee_id,
            on_premises_sam_account_name: self.on_premises_sam_account_name,
            extensions: self.extensions,
        };
        Ok(DirectoryUser {
            id,
            user_principal_name,
            on_premises_sync_enabled: self.on_premises_sync_enabled,
            certificate_user_ids,
            certificate_user_ids_unknown,
            attributes: (!attributes.is_empty()).then(|| Box::new(attributes)),
        })
    }
}

impl<'de> Deserialize<'de> for RawUser {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = RawUser;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a user object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawUser, A::Error> {
                let mut user = RawUser::default();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match key.as_ref() {
                        "@odata.type" => user.odata_type = map.next_value::<Lenient<String>>()?.0,
                        "id" => user.id = map.next_value::<Lenient<String>>()?.0,
                        "userPrincipalName" => user.user_principal_name = map.next_value::<Lenient<String>>()?.0,
                        "mail" => user.mail = map.next_value::<Lenient<String>>()?.0,
                        "employeeId" => user.employee_id = map.next_value::<Lenient<String>>()?.0,
                        "onPremisesSamAccountName" => {
                            user.on_premises_sam_account_name = map.next_value::<Lenient<String>>()?.0
                        }
                        "onPremisesSyncEnabled" => user.on_premises_sync_enabled = map.next_value::<Lenient<bool>>()?.0,
                        "authorizationInfo" => {
                            user.certificate_user_ids = map.next_value::<AuthorizationInfo>()?.0;
                        }
                        // Annotations (`@odata.*`, `x@odata.type`) are not properties.
                        other if other.contains('@') => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                        other => match map.next_value::<Lenient<String>>()?.0 {
                            Some(text) => {
                                user.extensions.insert(other.to_owned(), text);
                            }
                            // A repeated key counts as its last value, as a JSON object read whole would have it.
                            None => {
                                user.extensions.remove(other);
                            }
                        },
                    }
                }
                Ok(user)
            }
        }
        deserializer.deserialize_any(Lenient::<RawUser>::visitor(Visitor, |_| RawUser {
            not_an_object: true,
            ..RawUser::default()
        }))
    }
}

/// `authorizationInfo`: its `certificateUserIds` strings; `None` for anything else (null, another type, no
/// `certificateUserIds`, an item that is not a string). Never read as "no values": that is what a write would leave.
struct AuthorizationInfo(Option<Vec<String>>);

impl<'de> Deserialize<'de> for AuthorizationInfo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = AuthorizationInfo;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("authorizationInfo")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<AuthorizationInfo, A::Error> {
                let mut values = None;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    if key == "certificateUserIds" {
                        values = map.next_value::<Lenient<Strings>>()?.0.and_then(|s| s.0);
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                Ok(AuthorizationInfo(values))
            }
        }
        deserializer.deserialize_any(Lenient::<AuthorizationInfo>::visitor(Visitor, |_| AuthorizationInfo(None)))
    }
}

/// The items of an array when every one is a string; `None` when one is not.
struct Strings(Option<Vec<String>>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Strings;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
                let mut values = Some(Vec::new());
                while let Some(item) = seq.next_element::<Lenient<String>>()? {
                    match (item.0, values.as_mut()) {
                        (Some(value), Some(values)) => values.push(value),
                        _ => values = None,
                    }
                }
                Ok(Strings(values))
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

impl LenientTarget for Strings {
    const FROM_ARRAY: bool = true;
}

/// The most member slots reserved up front from a page's `@odata.count` (a larger group still reads whole: the list
/// grows past it as usual).
const MAX_RESERVED_MEMBERS: usize = 1_000_000;

/// The user calls: members of a group, users by id, and the certificateUserIds write, on the transport of
/// [`GraphClient`] (`client.rs`) and its `$batch` (`batch.rs`).
impl GraphClient {
    /// Every user member of `group`, with `select`ed properties, and how many members are not users.
    ///
    /// Users come from the `microsoft.graph.user` cast with `$top=999`, `$count=true` and
    /// `ConsistencyLevel: eventual` [group-list-members, aad-advanced-queries]; the other members are counted with
    /// one `…/$count` request (all types) minus the users read.
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, group_id = %group, scope = ?scope))]
    pub async fn group_members(
        &self,
        group: &GroupId,
        scope: MembershipScope,
        select: &[&str],
    ) -> Result<GroupMembers, GraphError> {
        let segment = scope.segment();
        let list = self.url(
            &format!("groups/{group}/{segment}/microsoft.graph.user"),
            &[("$select", &select_value(select)), ("$top", "999"), ("$count", "true")],
        )?;
        // Page by page into compact records: a page's JSON is dropped before the next one is asked for.
        let mut members = GroupMembers::default();
        let mut skipped = 0u64;
        let mut listed_count = None;
        let mut unreadable: Vec<String> = Vec::new();
        self.for_each_page::<Member>(operation::LIST_GROUP_MEMBERS, list, |page, count| {
            if let Some(count) = count {
                listed_count = Some(count);
                // The first page's `@odata.count`: room for every member at once, instead of doubling (and copying)
                // the list as it grows. Bounded, since the number is the server's word.
                members.users.reserve_exact(usize::try_from(count).unwrap_or(0).min(MAX_RESERVED_MEMBERS));
            }
            for member in page {
                match member {
                    Member::User(user) => members.users.push(user),
                    Member::NotAUser => skipped += 1,
                    Member::Unreadable(reason) => unreadable.push(reason),
                }
            }
        })
        .await?;
        // Fail closed: a member that is not readable as a user, or a listing shorter than Graph's own count, would
        // look like users leaving the group, and lose their values.
        let fail = |detail: String| GraphError::Decode { operation: operation::LIST_GROUP_MEMBERS, detail };
        if let Some(first) = unreadable.first() {
            return Err(fail(format!(
                "{} member(s) of group {group} came back without what a user needs ({first}; may the app read users, \
                 User.Read.All?)",
                unreadable.len()
            )));
        }
        let Some(count) = listed_count else {
            return Err(fail(format!(
                "the member list of group {group} has no @odata.count although $count=true was asked: whether it is \
                 whole cannot be told"
            )));
        };
        let expected = count.saturating_sub(skipped);
        if (members.users.len() as u64) < expected {
            return Err(fail(format!(
                "Graph listed {} user member(s) of group {group} but its @odata.count says {count}{}: a short read",
                members.users.len(),
                if skipped > 0 { format!(" ({skipped} of them not users)") } else { String::new() }
            )));
        }
        members.users.shrink_to_fit();

        let count = self.url(&format!("groups/{group}/{segment}/$count"), &[])?;
        let total = self.get_count(operation::COUNT_GROUP_MEMBERS, count).await?;
        let users_seen = members.users.len() as u64;
        // The count is eventually consistent with the listing [aad-advanced-queries]: never below zero.
        members.non_user_members = total.saturating_sub(users_seen).max(skipped);
        debug!(users = members.users.len(), non_users = members.non_user_members, "read group members");
        Ok(members)
    }

    /// Re-reads users by id through `$batch` GETs of 20 [json-batching]; a user that no longer exists is `None`.
    /// Results are in the order of `ids`.
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, users = ids.len()))]
    pub async fn get_users(
        &self,
        ids: &[UserId],
        select: &[&str],
    ) -> Result<Vec<(UserId, Option<DirectoryUser>)>, GraphError> {
        let query = format!("$select={}", encode(&select_value(select)));
        let requests = ids.iter().map(|id| BatchRequest::get(format!("/users/{id}?{query}"))).collect();
        let read = |item: BatchItem| match item.status {
            200..=299 => {
                let body = item.body.unwrap_or(Value::Null);
                DirectoryUser::from_graph_json(&body)
                    .map(Some)
                    .map_err(|detail| GraphError::Decode { operation: operation::READ_USERS, detail })
            }
            404 => Ok(None),
            _ => Err(item.into_error(operation::READ_USERS)),
        };
        let outcomes = self.run_batch(operation::READ_USERS, requests, read).await;
        let mut users = Vec::with_capacity(ids.len());
        for (id, outcome) in ids.iter().zip(outcomes) {
            users.push((id.clone(), outcome??));
        }
        Ok(users)
    }

    /// Replaces each user's `authorizationInfo.certificateUserIds` with the given list (PATCH replaces the whole
    /// collection [user-update]), 20 writes per `$batch` [json-batching]. Items Graph throttles are retried on their
    /// own after their own `Retry-After`; every other outcome is reported per user, in input order.
    pub async fn set_certificate_user_ids(
        &self,
        writes: Vec<(UserId, Vec<String>)>,
    ) -> Vec<(UserId, Result<(), GraphError>)> {
        self.set_certificate_user_ids_reserved(writes, None).await
    }

    /// [`Self::set_certificate_user_ids`], its first chunk on budget reserved with [`GraphClient::reserve_writes`].
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, users = writes.len()))]
    pub async fn set_certificate_user_ids_reserved(
        &self,
        writes: Vec<(UserId, Vec<String>)>,
        reservation: Option<WriteReservation>,
    ) -> Vec<(UserId, Result<(), GraphError>)> {
        let (ids, values): (Vec<UserId>, Vec<Vec<String>>) = writes.into_iter().unzip();
        let requests = ids
            .iter()
            .zip(values)
            .map(|(id, values)| BatchRequest::patch(format!("/users/{id}"), BatchBody::CertificateUserIds(values)))
            .collect();
        let written = |item: BatchItem| match item.status {
            200..=299 => Ok(()),
            _ => Err(item.into_error(operation::SET_CERTIFICATE_USER_IDS)),
        };
        let outcomes =
            self.run_batch_reserved(operation::SET_CERTIFICATE_USER_IDS, requests, reservation, written).await;
        ids.into_iter()
            .zip(outcomes)
            .map(|(id, outcome)| {
                let result = outcome.and_then(|written| written);
                if let Err(error) = &result {
                    // The sync report carries every failure; this is for tracing one user's write.
                    debug!(user_id = %id, %error, "certificateUserIds write failed");
                }
                (id, result)
            })
            .collect()
    }

    /// The users holding `value` in their certificateUserIds (normally at most one: values are unique per tenant)
    /// [concept-certificate-based-authentication-certificateuserids].
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant))]
    pub async fn find_certificate_user_id_holders(&self, value: &str) -> Result<Vec<(UserId, String)>, GraphError> {
        // OData string literals escape a quote by doubling it.
        let filter = format!("authorizationInfo/certificateUserIds/any(x:x eq '{}')", value.replace('\'', "''"));
        let url =
            self.url("users", &[("$filter", &filter), ("$select", "id,userPrincipalName"), ("$count", "true")])?;
        let items = self.get_all_pages(operation::FIND_CERTIFICATE_USER_ID_HOLDERS, url).await?;
        items
            .iter()
            .map(|item| {
                let user = DirectoryUser::from_graph_json(item).map_err(|detail| GraphError::Decode {
                    operation: operation::FIND_CERTIFICATE_USER_ID_HOLDERS,
                    detail,
                })?;
                Ok((user.id, user.user_principal_name))
            })
            .collect()
    }
}

/// `$select` value: the caller's properties plus those [`DirectoryUser`] cannot do without, without duplicates.
pub(crate) fn select_value(select: &[&str]) -> String {
    let mut properties: Vec<&str> = REQUIRED_SELECT.to_vec();
    for property in select {
        if !properties.iter().any(|known| known.eq_ignore_ascii_case(property)) {
            properties.push(property);
        }
    }
    properties.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_user_is_read_with_its_values_and_extensions() {
        let user = DirectoryUser::from_graph_json(&json!({
            "@odata.type": "#microsoft.graph.user",
            "id": "6E7B768E-07E2-4810-8459-485F84F8F204",
            "userPrincipalName": "ada@contoso.com",
            "mail": null,
            "employeeId": "42",
            "onPremisesSyncEnabled": true,
            "authorizationInfo": {"certificateUserIds": ["X509:<PN>ada@contoso.com", "X509:<S>CN=ada"]},
            "extension_abc_badge": "B-1",
            "accountEnabled": true
        }))
        .unwrap();
        assert_eq!(user.id.as_str(), "6e7b768e-07e2-4810-8459-485f84f8f204");
        assert_eq!(user.mail(), None);
        assert_eq!(user.employee_id(), Some("42"));
        assert_eq!(user.on_premises_sync_enabled, Some(true));
        assert_eq!(user.certificate_user_ids, vec!["X509:<PN>ada@contoso.com", "X509:<S>CN=ada"]);
        assert!(!user.certificate_user_ids_unknown);
        let extensions = &user.attributes.as_ref().unwrap().extensions;
        assert_eq!(extensions.len(), 1, "{extensions:?}");
        assert_eq!(extensions["extension_abc_badge"], "B-1");
    }

    #[test]
    fn odd_members_are_rejected_with_a_reason_not_a_panic() {
        let cases = [
            json!(null),
            json!({"@odata.type": "#microsoft.graph.user"}),
            json!({"id": "not-a-guid", "userPrincipalName": "x@y"}),
            json!({"@odata.type": "#microsoft.graph.user", "id": "6e7b768e-07e2-4810-8459-485f84f8f204"}),
        ];
        for case in cases {
            assert!(DirectoryUser::from_graph_json(&case).is_err(), "{case}");
        }
    }

    #[test]
    fn members_read_from_page_bytes_are_classified_like_whole_json_objects() {
        let page = r##"[
            {"@odata.type": "#microsoft.graph.user", "id": "6e7b768e-07e2-4810-8459-485f84f8f204",
             "userPrincipalName": "ada@contoso.com", "mail": 5, "onPremisesSyncEnabled": "yes",
             "authorizationInfo": {"certificateUserIds": ["X509:<PN>ada", null, "X509:<S>CN=ada"]},
             "extension_abc_badge": "B-1", "accountEnabled": true, "manager@odata.bind": "x",
             "nested": {"a": [1, 2]}, "list": ["x"]},
            {"@odata.type": "#microsoft.graph.device", "id": "6e7b768e-07e2-4810-8459-485f84f8f205"},
            {"@odata.type": "#Microsoft.Graph.User", "id": "6e7b768e-07e2-4810-8459-485f84f8f206"},
            {"id": "not-a-guid", "userPrincipalName": "x@y"},
            {"id": "6e7b768e-07e2-4810-8459-485f84f8f207", "userPrincipalName": "", "authorizationInfo": null},
            null, 7, "text", [1],
            {"id": "6E7B768E-07E2-4810-8459-485F84F8F208", "userPrincipalName": "b\u00e9@contoso.com",
             "authorizationInfo": [], "extension_x": "1", "extension_x": 2}
        ]"##;
        let members: Vec<Member> = serde_json::from_str(page).unwrap();
        let values: Vec<Value> = serde_json::from_str(page).unwrap();
        assert_eq!(members.len(), values.len());
        for (member, value) in members.iter().zip(&values) {
            // The page reader and `from_graph_json` (the whole object as a `Value`) agree on every member.
            let not_a_user = value
                .get("@odata.type")
                .and_then(Value::as_str)
                .is_some_and(|kind| !kind.eq_ignore_ascii_case("#microsoft.graph.user"));
            match (member, DirectoryUser::from_graph_json(value)) {
                (Member::NotAUser, _) => assert!(not_a_user, "{value}"),
                (Member::User(user), Ok(expected)) => assert_eq!(user, &expected, "{value}"),
                (Member::Unreadable(reason), Err(expected)) => assert_eq!(reason, &expected, "{value}"),
                (member, expected) => panic!("{value}: page reader {member:?}, whole object {expected:?}"),
            }
        }
        let Member::User(ada) = &members[0] else { panic!("{:?}", members[0]) };
        assert_eq!(ada.mail(), None, "a number is not a mail address");
        assert_eq!(ada.on_premises_sync_enabled, None);
        // A list with an item that is not a string is not known: writing it back without that item would lose it.
        assert!(ada.certificate_user_ids.is_empty() && ada.certificate_user_ids_unknown, "{ada:?}");
        assert_eq!(ada.attributes.as_ref().unwrap().extensions.keys().collect::<Vec<_>>(), ["extension_abc_badge"]);
        assert!(matches!(members[1], Member::NotAUser));
        assert!(matches!(&members[2], Member::Unreadable(r) if r.contains("no userPrincipalName")));
        assert!(matches!(&members[5], Member::Unreadable(r) if r == "the user is not a JSON object"));
        let Member::User(last) = &members[9] else { panic!("{:?}", members[9]) };
        assert_eq!(last.user_principal_name, "bé@contoso.com");
        assert!(last.certificate_user_ids.is_empty() && last.attributes.is_none(), "{last:?}");
        assert!(last.certificate_user_ids_unknown, "authorizationInfo [] is not the documented object: {last:?}");
    }

    #[test]
    fn certificate_user_ids_are_known_only_when_graph_gives_the_documented_list() {
        let with = |info: Option<Value>| {
            let mut user =
                json!({"id": "6e7b768e-07e2-4810-8459-485f84f8f204", "userPrincipalName": "ada@contoso.com"});
            if let Some(info) = info {
                user["authorizationInfo"] = info;
            }
            DirectoryUser::from_graph_json(&user).unwrap()
        };
        let known = with(Some(json!({"certificateUserIds": ["X509:<PN>ada"]})));
        assert_eq!(known.certificate_user_ids, ["X509:<PN>ada"]);
        assert!(!known.certificate_user_ids_unknown);
        let empty = with(Some(json!({"@odata.type": "microsoft.graph.authorizationInfo", "certificateUserIds": []})));
        assert!(empty.certificate_user_ids.is_empty() && !empty.certificate_user_ids_unknown, "an empty list is known");
        // Absent, null, another type, no list, a list that is not all strings: unknown, never "no values".
        let odd = [
            None,
            Some(Value::Null),
            Some(json!({})),
            Some(json!({"certificateUserIds": null})),
            Some(json!({"certificateUserIds": "X509:<PN>ada"})),
            Some(json!({"certificateUserIds": ["X509:<PN>ada", 7]})),
            Some(json!([])),
            Some(json!("x")),
        ];
        for info in odd {
            let user = with(info.clone());
            assert!(user.certificate_user_ids_unknown && user.certificate_user_ids.is_empty(), "{info:?}");
        }
    }

    #[test]
    fn attributes_read_a_user_by_graph_property_and_extensions_only_among_the_others() {
        use crate::domain::Attribute;
        let user = DirectoryUser::from_graph_json(&json!({
            "id": "6e7b768e-07e2-4810-8459-485f84f8f204",
            "userPrincipalName": "Ada@contoso.com",
            "mail": "ada@contoso.com",
            "employeeId": "42",
            "onPremisesSamAccountName": "ADA",
            "department": "Research",
            "extension_abc_badge": "B-1"
        }))
        .unwrap();
        let read = |attribute: Attribute| attribute.read(&user);
        assert_eq!(read(Attribute::Upn), Some("Ada@contoso.com"));
        assert_eq!(read(Attribute::LocalPart), Some("Ada"));
        assert_eq!(read(Attribute::Mail), Some("ada@contoso.com"));
        assert_eq!(read(Attribute::EmployeeId), Some("42"));
        assert_eq!(read(Attribute::SamAccountName), Some("ADA"));
        assert_eq!(read(Attribute::Extension("extension_abc_badge".into())), Some("B-1"));
        // A property without a field of its own is still there by its Graph name: a new attribute reads it as is.
        assert_eq!(user.property("department"), Some("Research"));
        // `extension:mail` has always read nothing: mail is held by name, not among the other properties.
        assert_eq!(read(Attribute::Extension("mail".into())), None);
        assert_eq!(user.property("mail"), Some("ada@contoso.com"));
    }

    #[test]
    fn select_always_includes_id_and_upn_once() {
        assert_eq!(select_value(&["mail", "id"]), "id,userPrincipalName,mail");
        assert_eq!(select_value(USER_SELECT).matches("id,").count(), 1);
    }
}
