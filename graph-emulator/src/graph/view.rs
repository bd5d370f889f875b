//! How directory objects look on the wire: default properties, `$select`, limited information for types the app
//! may not read. [user-get] [group-list-members] [permissions-overview] "limited information"

use serde::Serialize;
use serde::ser::SerializeMap;

use super::error::GraphError;
use crate::directory::{ObjectKind, TenantData};
use crate::model::UserRecord;
use crate::options::{OddAnswers, OddAuthorizationInfo};

/// A property of a user the emulator can show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Prop {
    Id,
    UserPrincipalName,
    DisplayName,
    Mail,
    EmployeeId,
    OnPremisesSamAccountName,
    OnPremisesSyncEnabled,
    AuthorizationInfo,
    BusinessPhones,
    AccountEnabled,
    CreatedDateTime,
    /// A user property the emulator does not model: shown as null.
    Null(&'static str),
    /// A directory extension (`extension_{appId}_{name}`): shown when the user has it.
    Extension(String),
}

/// Properties of users that exist in Graph but are not modelled; selecting them gives null.
const NULL_USER_PROPS: &[&str] = &[
    "givenName",
    "surname",
    "jobTitle",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "department",
    "companyName",
    "city",
    "country",
    "employeeType",
    "onPremisesImmutableId",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesUserPrincipalName",
    "onPremisesSecurityIdentifier",
    "userType",
    "deletedDateTime",
    "usageLocation",
    "otherMails",
    "proxyAddresses",
    "identities",
];

/// Properties of other directory object types that can be selected on a member listing.
const OTHER_TYPE_PROPS: &[&str] = &[
    "description",
    "securityEnabled",
    "mailEnabled",
    "mailNickname",
    "groupTypes",
    "appId",
    "deviceId",
    "operatingSystem",
    "operatingSystemVersion",
    "servicePrincipalType",
];

fn parse_prop(name: &str) -> Option<Prop> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "id" => Prop::Id,
        "userprincipalname" => Prop::UserPrincipalName,
        "displayname" => Prop::DisplayName,
        "mail" => Prop::Mail,
        "employeeid" => Prop::EmployeeId,
        "onpremisessamaccountname" => Prop::OnPremisesSamAccountName,
        "onpremisessyncenabled" => Prop::OnPremisesSyncEnabled,
        "authorizationinfo" => Prop::AuthorizationInfo,
        "businessphones" => Prop::BusinessPhones,
        "accountenabled" => Prop::AccountEnabled,
        "createddatetime" => Prop::CreatedDateTime,
        _ if lower.starts_with("extension_") => Prop::Extension(name.to_owned()),
        _ => Prop::Null(NULL_USER_PROPS.iter().find(|p| p.eq_ignore_ascii_case(name))?),
    })
}

/// What to show of each object.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    /// No `$select`: the default property set.
    Default,
    Props(Vec<Prop>),
}

impl Selection {
    /// Parses `$select`. `on_type` names the type in the error; member listings also accept properties of the other
    /// member types (they are simply absent on users).
    pub(crate) fn parse(select: Option<&[String]>, on_type: &str, allow_other_types: bool) -> Result<Self, GraphError> {
        let Some(names) = select else {
            return Ok(Selection::Default);
        };
        let mut props = Vec::new();
        for name in names {
            match parse_prop(name) {
                Some(prop) => {
                    if !props.contains(&prop) {
                        props.push(prop);
                    }
                }
                None if allow_other_types && OTHER_TYPE_PROPS.iter().any(|p| p.eq_ignore_ascii_case(name)) => {}
                None => {
                    return Err(GraphError::bad_request(
                        "Request_BadRequest",
                        format!("Could not find a property named '{name}' on type '{on_type}'."),
                    ));
                }
            }
        }
        Ok(Selection::Props(props))
    }
}

const DEFAULT_USER_PROPS: &[Prop] = &[
    Prop::BusinessPhones,
    Prop::DisplayName,
    Prop::Null("givenName"),
    Prop::Null("jobTitle"),
    Prop::Mail,
    Prop::Null("mobilePhone"),
    Prop::Null("officeLocation"),
    Prop::Null("preferredLanguage"),
    Prop::Null("surname"),
    Prop::UserPrincipalName,
    Prop::Id,
];

#[derive(Serialize)]
struct AuthorizationInfo<'a> {
    #[serde(rename = "certificateUserIds")]
    certificate_user_ids: &'a [String],
}

fn write_user_prop<M: SerializeMap>(
    map: &mut M,
    user: &UserRecord,
    prop: &Prop,
    odd: Option<&OddAnswers>,
) -> Result<(), M::Error> {
    match prop {
        Prop::AuthorizationInfo => match odd.and_then(|odd| odd.authorization_info.get(&user.id)) {
            None => map.serialize_entry(
                "authorizationInfo",
                &AuthorizationInfo { certificate_user_ids: &user.certificate_user_ids },
            ),
            Some(OddAuthorizationInfo::Absent) => Ok(()),
            Some(OddAuthorizationInfo::Null) => map.serialize_entry("authorizationInfo", &()),
            Some(OddAuthorizationInfo::NotAList) => map.serialize_entry(
                "authorizationInfo",
                &serde_json::json!({ "certificateUserIds": user.certificate_user_ids.join(",") }),
            ),
        },
        Prop::Id => map.serialize_entry("id", &user.id),
        Prop::UserPrincipalName => map.serialize_entry("userPrincipalName", &user.user_principal_name),
        Prop::DisplayName => map.serialize_entry("displayName", &user.display_name),
        Prop::Mail => map.serialize_entry("mail", &user.mail),
        Prop::EmployeeId => map.serialize_entry("employeeId", &user.employee_id),
        Prop::OnPremisesSamAccountName => {
            map.serialize_entry("onPremisesSamAccountName", &user.on_premises_sam_account_name)
        }
        Prop::OnPremisesSyncEnabled => map.serialize_entry("onPremisesSyncEnabled", &user.on_premises_sync_enabled),
        Prop::BusinessPhones => map.serialize_entry("businessPhones", &[] as &[String]),
        Prop::AccountEnabled => map.serialize_entry("accountEnabled", &true),
        Prop::CreatedDateTime => map.serialize_entry("createdDateTime", &user.created_date_time),
        Prop::Null(name) => map.serialize_entry(name, &()),
        Prop::Extension(name) => match user.extensions.get(name) {
            Some(value) => map.serialize_entry(name, value),
            None => Ok(()),
        },
    }
}

/// A user as `/users` endpoints show it (no `@odata.type`).
pub(crate) struct UserView<'a> {
    pub user: &'a UserRecord,
    pub selection: &'a Selection,
    /// `@odata.context`, for a single entity.
    pub context: Option<&'a str>,
    /// Odd answers in force ([`OddAnswers::authorization_info`] applies here).
    pub odd: Option<&'a OddAnswers>,
}

impl Serialize for UserView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(context) = self.context {
            map.serialize_entry("@odata.context", context)?;
        }
        let props: &[Prop] = match self.selection {
            Selection::Default => DEFAULT_USER_PROPS,
            Selection::Props(props) => props,
        };
        for prop in props {
            write_user_prop(&mut map, self.user, prop, self.odd)?;
        }
        map.end()
    }
}

/// Which member types the app may read in full. [permissions-overview] "limited information returned for
/// inaccessible member objects": others come back with `@odata.type` and `id`, selected properties null.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Readable {
    pub users: bool,
    pub devices: bool,
    pub groups: bool,
    pub service_principals: bool,
}

impl Readable {
    pub(crate) fn from_roles(roles: &[String]) -> Self {
        let has = |names: &[&str]| roles.iter().any(|r| names.contains(&r.as_str()));
        let directory = ["Directory.Read.All", "Directory.ReadWrite.All"];
        let with_directory = |names: &[&str]| has(names) || has(&directory);
        Self {
            users: with_directory(&["User.Read.All", "User.ReadWrite.All"]),
            devices: with_directory(&["Device.Read.All", "Device.ReadWrite.All"]),
            groups: with_directory(&[
                "Group.Read.All",
                "Group.ReadWrite.All",
                "GroupMember.Read.All",
                "GroupMember.ReadWrite.All",
            ]),
            service_principals: with_directory(&["Application.Read.All", "Application.ReadWrite.All"]),
        }
    }

    fn can_read(self, kind: ObjectKind) -> bool {
        match kind {
            ObjectKind::User => self.users,
            ObjectKind::Device => self.devices,
            ObjectKind::Group => self.groups,
            ObjectKind::ServicePrincipal => self.service_principals,
        }
    }
}

/// A member of a group as member listings show it: always `@odata.type` and `id`. [group-list-members]
pub(crate) struct MemberView<'a> {
    pub data: &'a TenantData,
    pub id: &'a str,
    pub kind: ObjectKind,
    pub selection: &'a Selection,
    pub readable: Readable,
    /// Odd answers in force ([`OddAnswers::members_without_fields`] and `authorization_info` apply here).
    pub odd: Option<&'a OddAnswers>,
}

impl Serialize for MemberView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("@odata.type", self.kind.odata_type())?;
        map.serialize_entry("id", self.id)?;
        if !self.readable.can_read(self.kind) {
            if let Selection::Props(props) = self.selection {
                for prop in props {
                    if let Prop::Id = prop {
                        continue;
                    }
                    write_null(&mut map, prop)?;
                }
            }
            return map.end();
        }
        match self.kind {
            ObjectKind::User if self.odd.is_some_and(|odd| odd.members_without_fields) => {}
            ObjectKind::User => {
                if let Some(user) = self.data.users.get(self.id) {
                    let props: &[Prop] = match self.selection {
                        Selection::Default => DEFAULT_USER_PROPS,
                        Selection::Props(props) => props,
                    };
                    for prop in props.iter().filter(|p| **p != Prop::Id) {
                        write_user_prop(&mut map, user, prop, self.odd)?;
                    }
                }
            }
            ObjectKind::Group => {
                let name = self.data.groups.get(self.id).map(|g| g.display_name.as_str());
                if selects_display_name(self.selection) {
                    map.serialize_entry("displayName", &name)?;
                }
                if matches!(self.selection, Selection::Default) {
                    map.serialize_entry("securityEnabled", &true)?;
                    map.serialize_entry("mailEnabled", &false)?;
                }
            }
            ObjectKind::Device | ObjectKind::ServicePrincipal => {
                if selects_display_name(self.selection) {
                    let name = self.data.others.get(self.id).map(|o| o.display_name.as_str());
                    map.serialize_entry("displayName", &name)?;
                }
            }
        }
        map.end()
    }
}

fn selects_display_name(selection: &Selection) -> bool {
    match selection {
        Selection::Default => true,
        Selection::Props(props) => props.contains(&Prop::DisplayName),
    }
}

fn write_null<M: SerializeMap>(map: &mut M, prop: &Prop) -> Result<(), M::Error> {
    let name: &str = match prop {
        Prop::Id => "id",
        Prop::UserPrincipalName => "userPrincipalName",
        Prop::DisplayName => "displayName",
        Prop::Mail => "mail",
        Prop::EmployeeId => "employeeId",
        Prop::OnPremisesSamAccountName => "onPremisesSamAccountName",
        Prop::OnPremisesSyncEnabled => "onPremisesSyncEnabled",
        Prop::AuthorizationInfo => "authorizationInfo",
        Prop::BusinessPhones => "businessPhones",
        Prop::AccountEnabled => "accountEnabled",
        Prop::CreatedDateTime => "createdDateTime",
        Prop::Null(name) => name,
        Prop::Extension(name) => name,
    };
    map.serialize_entry(name, &())
}
