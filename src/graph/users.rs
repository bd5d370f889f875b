//! The user as this project reads it from Graph, and its tolerant parsing: Graph omits unselected and null
//! properties, and a member the app may not read comes back with only `@odata.type` and `id` [group-list-members].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::UserId;

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

/// Properties [`DirectoryUser`] needs whatever the caller selects.
pub(crate) const REQUIRED_SELECT: &[&str] = &["id", "userPrincipalName"];

const KNOWN: &[&str] = &[
    "id",
    "userPrincipalName",
    "mail",
    "employeeId",
    "onPremisesSamAccountName",
    "onPremisesSyncEnabled",
    "authorizationInfo",
];

/// A user of either tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    pub id: UserId,
    pub user_principal_name: String,
    pub mail: Option<String>,
    pub employee_id: Option<String>,
    pub on_premises_sam_account_name: Option<String>,
    pub on_premises_sync_enabled: Option<bool>,
    /// `authorizationInfo.certificateUserIds`; empty when absent or null.
    pub certificate_user_ids: Vec<String>,
    /// Every other string property that was selected (e.g. `extension_<appid>_attr`, `displayName`).
    pub extensions: BTreeMap<String, String>,
}

/// Members of a group as read through the `microsoft.graph.user` cast.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupMembers {
    pub users: Vec<DirectoryUser>,
    /// Members that are not users (devices, groups, service principals, contacts…), counted, never read
    /// [group-list-members].
    pub non_user_members: u64,
    /// Users that came back without a usable `id` or `userPrincipalName` (typically: the app may not read them);
    /// skipped and counted so the report can say so.
    pub unreadable_users: u64,
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
        let object = value.as_object().ok_or("the user is not a JSON object")?;
        let string = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
        let raw_id = string("id").ok_or("the user has no id")?;
        let id = UserId::parse(&raw_id).map_err(|error| error.to_string())?;
        let user_principal_name = string("userPrincipalName")
            .filter(|upn| !upn.is_empty())
            .ok_or_else(|| format!("user {id} has no userPrincipalName (was it selected, and may the app read it?)"))?;
        let certificate_user_ids = object
            .get("authorizationInfo")
            .and_then(|info| info.get("certificateUserIds"))
            .and_then(Value::as_array)
            .map(|values| values.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let extensions = object
            .iter()
            .filter(|(key, _)| !KNOWN.contains(&key.as_str()) && !key.contains('@'))
            .filter_map(|(key, value)| value.as_str().map(|text| (key.clone(), text.to_owned())))
            .collect();
        Ok(Self {
            id,
            user_principal_name,
            mail: string("mail"),
            employee_id: string("employeeId"),
            on_premises_sam_account_name: string("onPremisesSamAccountName"),
            on_premises_sync_enabled: object.get("onPremisesSyncEnabled").and_then(Value::as_bool),
            certificate_user_ids,
            extensions,
        })
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
            "authorizationInfo": {"certificateUserIds": ["X509:<PN>ada@contoso.com", 7]},
            "extension_abc_badge": "B-1",
            "accountEnabled": true
        }))
        .unwrap();
        assert_eq!(user.id.as_str(), "6e7b768e-07e2-4810-8459-485f84f8f204");
        assert_eq!(user.mail, None);
        assert_eq!(user.employee_id.as_deref(), Some("42"));
        assert_eq!(user.on_premises_sync_enabled, Some(true));
        assert_eq!(user.certificate_user_ids, vec!["X509:<PN>ada@contoso.com"]);
        assert_eq!(user.extensions.len(), 1, "{:?}", user.extensions);
        assert_eq!(user.extensions["extension_abc_badge"], "B-1");
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
    fn select_always_includes_id_and_upn_once() {
        assert_eq!(select_value(&["mail", "id"]), "id,userPrincipalName,mail");
        assert_eq!(select_value(USER_SELECT).matches("id,").count(), 1);
    }
}
