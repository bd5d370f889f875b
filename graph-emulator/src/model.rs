//! The directory's records as the back door sees them: users, apps, managed identities, request log entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A user as stored in a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: String,
    pub user_principal_name: String,
    pub display_name: Option<String>,
    pub mail: Option<String>,
    pub employee_id: Option<String>,
    pub on_premises_sam_account_name: Option<String>,
    /// `true` for users synchronised from on-premises AD: Graph refuses to write their `certificateUserIds`.
    pub on_premises_sync_enabled: Option<bool>,
    /// `authorizationInfo.certificateUserIds`.
    pub certificate_user_ids: Vec<String>,
    /// Directory extension properties by full name (`extension_{appId}_{name}`).
    pub extensions: BTreeMap<String, String>,
    /// `createdDateTime` (RFC 3339). Graph: "the date and time the user was created … read-only"; null for some users
    /// created before 2018, when it could not be determined [user resource type]. Seeded users default to
    /// [`NewUser::DEFAULT_CREATED`], so fixtures may backdate certificates freely.
    pub created_date_time: Option<String>,
}

/// Builder of a user to seed: `NewUser::new("a@x").mail("a@x").certificate_user_ids(["X509:<PN>a@x"])`.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub(crate) record: UserRecord,
    pub(crate) id_given: bool,
}

impl NewUser {
    pub fn new(user_principal_name: impl Into<String>) -> Self {
        Self {
            record: UserRecord {
                id: String::new(),
                user_principal_name: user_principal_name.into(),
                display_name: None,
                mail: None,
                employee_id: None,
                on_premises_sam_account_name: None,
                on_premises_sync_enabled: None,
                certificate_user_ids: Vec::new(),
                extensions: BTreeMap::new(),
                created_date_time: Some(Self::DEFAULT_CREATED.to_owned()),
            },
            id_given: false,
        }
    }

    /// When a seeded user was created unless [`Self::created`] says otherwise.
    pub const DEFAULT_CREATED: &'static str = "2020-01-01T00:00:00Z";

    /// `createdDateTime` (RFC 3339), or `None` for the null Graph gives when it is not known.
    pub fn created(mut self, at: Option<&str>) -> Self {
        self.record.created_date_time = at.map(str::to_owned);
        self
    }

    /// The object id; a random GUID when not given.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.record.id = id.into();
        self.id_given = true;
        self
    }

    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.record.display_name = Some(name.into());
        self
    }

    pub fn mail(mut self, mail: impl Into<String>) -> Self {
        self.record.mail = Some(mail.into());
        self
    }

    pub fn employee_id(mut self, employee_id: impl Into<String>) -> Self {
        self.record.employee_id = Some(employee_id.into());
        self
    }

    pub fn sam(mut self, sam_account_name: impl Into<String>) -> Self {
        self.record.on_premises_sam_account_name = Some(sam_account_name.into());
        self
    }

    pub fn synced(mut self, synced: bool) -> Self {
        self.record.on_premises_sync_enabled = Some(synced);
        self
    }

    pub fn certificate_user_ids<I, S>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.record.certificate_user_ids = values.into_iter().map(Into::into).collect();
        self
    }

    pub fn extension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.record.extensions.insert(name.into(), value.into());
        self
    }
}

/// A federated identity credential of an app registration. Matching is case-sensitive. [workload-identity-federation]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederatedCredential {
    pub issuer: String,
    pub subject: String,
    /// Normally `api://AzureADTokenExchange`.
    pub audience: String,
}

/// An app registration (with its service principal) in one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRegistration {
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Microsoft Graph application permissions granted (admin-consented), e.g. `GroupMember.Read.All`.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub federated_credentials: Vec<FederatedCredential>,
}

/// A managed identity (App Service), living in one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedIdentity {
    pub client_id: String,
    /// The service principal object id: the `sub` of its federated assertions and the `oid` of its tokens.
    pub object_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// What a logged request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestKind {
    /// A Graph GET.
    Read,
    /// A Graph POST/PATCH/PUT/DELETE (other than `$batch`).
    Write,
    /// The outer `POST /$batch`; its items are logged on their own with `via_batch`.
    Batch,
    /// `POST /{tenant}/oauth2/v2.0/token`.
    Token,
    /// The App Service managed identity endpoint.
    ManagedIdentity,
}

/// One request the emulator answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The tenant of the token (Graph) or of the path (token endpoint); `None` when unknown.
    pub tenant: Option<String>,
    /// The calling app's client id, when known.
    pub app_id: Option<String>,
    pub method: String,
    /// Path and query as received, e.g. `/v1.0/groups/{id}/members?$top=999`; batch items as `/v1.0` + their url.
    pub path: String,
    pub status: u16,
    pub kind: RequestKind,
    /// For [`RequestKind::Batch`]: the number of items.
    pub batch_items: Option<usize>,
    /// True for an item of a `$batch`.
    pub via_batch: bool,
    pub request_id: String,
}

/// A change-notification subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub id: String,
    pub tenant_id: String,
    pub app_id: String,
    pub resource: String,
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    pub client_state: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expiration_date_time: OffsetDateTime,
    /// The group the subscription watches (parsed from `resource`).
    pub group_id: String,
}
