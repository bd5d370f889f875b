//! The one error type of the Graph layer. Every variant names the operation that failed and carries what an
//! administrator needs to act: the HTTP status, Graph's `code` and `message`, the `request-id` Microsoft support asks
//! for [Errors], and a hint naming the permission or setting that is most likely missing.

use std::{sync::Arc, time::Duration};

use serde_json::Value;

use crate::domain::TenantId;

/// Operation names used in errors, logs and hints. They are `&'static str` so errors stay cheap to clone.
pub mod operation {
    pub const LIST_GROUP_MEMBERS: &str = "list group members";
    pub const COUNT_GROUP_MEMBERS: &str = "count group members";
    pub const READ_USERS: &str = "read users";
    pub const SET_CERTIFICATE_USER_IDS: &str = "set certificateUserIds";
    pub const FIND_CERTIFICATE_USER_ID_HOLDERS: &str = "find certificateUserIds holders";
    pub const BATCH: &str = "send $batch";
    pub const GROUP_DELTA: &str = "read group changes (delta)";
    pub const CREATE_SUBSCRIPTION: &str = "create subscription";
    pub const LIST_SUBSCRIPTIONS: &str = "list subscriptions";
    pub const GET_SUBSCRIPTION: &str = "read subscription";
    pub const RENEW_SUBSCRIPTION: &str = "renew subscription";
    pub const REAUTHORIZE_SUBSCRIPTION: &str = "reauthorize subscription";
    pub const DELETE_SUBSCRIPTION: &str = "delete subscription";
    pub const LIST_CLOUD_CAS: &str = "list Cloud PKI certification authorities (beta)";
    pub const LIST_LEAF_CERTIFICATES: &str = "list Cloud PKI leaf certificates (beta)";
    pub const LIST_CERTIFICATE_STATES: &str = "list managed device certificate states (beta)";
    pub const DOWNLOAD_CA_CERTIFICATE: &str = "download a CA certificate";
}

const HINT_WRITE_FORBIDDEN: &str = "the app needs the Microsoft Graph application permission User.ReadWrite.All in this \
     tenant, and writing certificateUserIds may also need the Privileged Authentication Administrator directory role \
     for the app";
const HINT_MEMBERS_FORBIDDEN: &str = "the app needs the Microsoft Graph application permission GroupMember.Read.All in \
     this tenant (and Member.Read.Hidden for groups with hidden membership)";
const HINT_CLOUD_CA_FORBIDDEN: &str = "reading Intune Cloud PKI CAs needs the Microsoft Graph application permission \
     DeviceManagementCloudCA.Read.All in Tenant A (and an Intune licence); or set CERTIFICATE_SOURCE to another source";
const HINT_INTUNE_CERTIFICATES_FORBIDDEN: &str = "reading the certificates Intune issued needs the Microsoft Graph \
     application permission DeviceManagementConfiguration.Read.All in Tenant A (and an Intune licence)";
const HINT_USERS_FORBIDDEN: &str =
    "the app needs the Microsoft Graph application permission User.Read.All (or User.ReadWrite.All) in this tenant";
const HINT_SYNCED_USER: &str = "this user is synchronized from on-premises: certificateUserIds can only be set through \
     Microsoft Entra Connect";
const HINT_UNIQUENESS: &str = "another user in this tenant already holds one of these certificateUserIds values \
     (each value must be unique in the tenant): find the holder and remove the value there first";
const HINT_UNAUTHORIZED: &str = "Microsoft Graph rejected the access token: check that the credential belongs to \
     this tenant and that admin consent was granted";
const HINT_GROUP_NOT_FOUND: &str = "the group does not exist in this tenant: check the configured group id";
const HINT_SUBSCRIPTIONS_FORBIDDEN: &str = "change-notification subscriptions on groups need the Microsoft Graph \
     application permission Group.Read.All in this tenant; an app also has at most 100 group subscriptions per tenant";
const HINT_SUBSCRIPTION_VALIDATION: &str = "Graph could not validate the notification URL: check that \
     WEBHOOK_NOTIFICATION_URL is the function-webhook URL with its ?code= key and that the Function App is running";

/// An error of the Graph layer.
///
/// `Clone` because one failed `$batch` request fails every item it carried; the non-clonable sources are kept behind
/// an `Arc`. The source's text is part of the message (and not also a `#[source]`) so a report that prints only
/// `Display` still shows the root cause (style: "in the message or in `#[source]`, not both").
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// Graph answered with an error status that retrying will not fix.
    #[error(
        "{operation} failed: HTTP {status} {code}: {message}{}",
        api_suffix(message, request_id.as_deref(), *hint)
    )]
    Api {
        operation: &'static str,
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
        hint: Option<&'static str>,
    },

    /// Graph kept throttling (429) or was unavailable (503/504) until the attempt or wait budget ran out [throttling].
    #[error(
        "{operation} failed: still throttled or unavailable (last HTTP {status}) after {attempts} attempts and \
         {:.1} s of waiting{}. Hint: the app is over its Microsoft Graph budget for this tenant; run less often or \
         raise the retry budget",
        waited.as_secs_f64(),
        request_id.as_deref().map(|id| format!(" (request-id {id})")).unwrap_or_default()
    )]
    Throttled {
        operation: &'static str,
        attempts: u32,
        waited: Duration,
        /// The last status seen: 429, 503 or 504 (0 when a `$batch` response left the item out).
        status: u16,
        request_id: Option<String>,
    },

    /// Graph could not be reached, or the connection broke or timed out (after retries).
    #[error("{operation} failed: could not reach Microsoft Graph: {detail}")]
    Transport { operation: &'static str, detail: String, error: Arc<reqwest::Error> },

    /// No access token could be obtained for the tenant.
    #[error("could not get a token for tenant {tenant} with {credential}: {detail}")]
    Credential {
        tenant: TenantId,
        /// What kind of credential was used (see [`super::TenantCredential::kind`]).
        credential: &'static str,
        detail: String,
        error: Arc<azure_core::Error>,
    },

    /// Graph answered 2xx with a body this client cannot read.
    #[error("{operation} failed: unexpected response from Microsoft Graph: {detail}")]
    Decode { operation: &'static str, detail: String },

    /// A setting or input this client cannot use (bad URL, bad CA PEM…).
    #[error("invalid Microsoft Graph client configuration: {0}")]
    Configuration(String),

    /// A feature this build does not provide.
    #[error("not supported in this build: {0}")]
    NotSupported(String),
}

impl GraphError {
    /// Builds an [`GraphError::Api`] from an error response, parsing the Graph error body tolerantly
    /// (`{"error":{"code","message","innerError":{"request-id"}}}` [Errors]); `header_request_id` is the
    /// `request-id` response header, preferred when the body has none.
    pub(crate) fn from_response(
        operation: &'static str,
        status: u16,
        header_request_id: Option<String>,
        body: &[u8],
    ) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        Self::from_json_response(operation, status, header_request_id, parsed.as_ref(), body)
    }

    /// As [`Self::from_response`], for a body that is already JSON (a `$batch` item) or absent.
    pub(crate) fn from_json_response(
        operation: &'static str,
        status: u16,
        header_request_id: Option<String>,
        body: Option<&Value>,
        raw: &[u8],
    ) -> Self {
        let error = body.and_then(|body| body.get("error"));
        let code = error
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .filter(|code| !code.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| default_code(status).to_owned());
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str().or_else(|| m.get("value").and_then(Value::as_str)))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(raw);
                let text = text.trim();
                if text.is_empty() { "(no error body)".to_owned() } else { text.chars().take(500).collect() }
            });
        let inner = error.and_then(|e| e.get("innerError").or_else(|| e.get("innererror")));
        let body_request_id = inner
            .and_then(|inner| inner.get("request-id").or_else(|| inner.get("requestId")))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let request_id = header_request_id.or(body_request_id);
        let hint = hint_for(operation, status, &code, &message);
        GraphError::Api { operation, status, code, message, request_id, hint }
    }

    pub(crate) fn transport(operation: &'static str, error: reqwest::Error) -> Self {
        GraphError::Transport { operation, detail: crate::error_chain(&error), error: Arc::new(error) }
    }

    pub(crate) fn credential(tenant: &TenantId, credential: &'static str, error: azure_core::Error) -> Self {
        GraphError::Credential {
            tenant: tenant.clone(),
            credential,
            detail: crate::error_chain(&error),
            error: Arc::new(error),
        }
    }

    /// The HTTP status Graph answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Api { status, .. } | GraphError::Throttled { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Graph's `request-id`, for a support case.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            GraphError::Api { request_id, .. } | GraphError::Throttled { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// Whether a certificateUserIds write was refused because another object already holds one of the values.
    /// The exact text is undocumented [certificateUserIds: UNCERTAIN], so this matches the likely phrasings.
    pub fn is_uniqueness_conflict(&self) -> bool {
        matches!(self, GraphError::Api { code, message, .. } if looks_like_uniqueness_conflict(code, message))
    }

    /// Whether a write was refused because the user is mastered on-premises (synchronized by Entra Connect)
    /// [concept-certificate-based-authentication-certificateuserids].
    pub fn is_synced_user_rejection(&self) -> bool {
        matches!(self, GraphError::Api { code, message, .. } if looks_like_synced_user_rejection(code, message))
    }

    /// Whether a delta query's token is no longer usable: `410 Gone`, or a 4xx with `syncStateNotFound` or
    /// `resyncRequired` [delta-query-overview]. The caller restarts with a full round.
    pub fn is_delta_token_expired(&self) -> bool {
        match self {
            GraphError::Api { status: 410, .. } => true,
            GraphError::Api { status: 400..=499, code, .. } => {
                code.eq_ignore_ascii_case("syncStateNotFound") || code.eq_ignore_ascii_case("resyncRequired")
            }
            _ => false,
        }
    }

    /// Whether the error is the throttling budget running out (worth retrying on a later run, not a data problem).
    pub fn is_throttled(&self) -> bool {
        matches!(self, GraphError::Throttled { .. })
    }
}

/// ` (request-id …). Hint: …`, without doubling the message's own final period.
fn api_suffix(message: &str, request_id: Option<&str>, hint: Option<&str>) -> String {
    let mut suffix = request_id.map(|id| format!(" (request-id {id})")).unwrap_or_default();
    if let Some(hint) = hint {
        let ends_sentence = suffix.is_empty() && message.ends_with('.');
        suffix.push_str(if ends_sentence { " Hint: " } else { ". Hint: " });
        suffix.push_str(hint);
    }
    suffix
}

fn default_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        500..=599 => "ServerError",
        _ => "UnknownError",
    }
}

fn looks_like_uniqueness_conflict(code: &str, message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("another object with the same value")
        || (message.contains("already exists") && message.contains("same value"))
        || code.eq_ignore_ascii_case("ObjectConflict")
}

fn looks_like_synced_user_rejection(code: &str, message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    let code = code.to_ascii_lowercase();
    message.contains("on-premises mastered")
        || message.contains("on-premise mastered")
        || message.contains("onpremisesmastered")
        || (message.contains("on-premises") && message.contains("synchroniz"))
        || message.contains("directory synchronization")
        || code.contains("onpremises")
}

fn hint_for(operation: &'static str, status: u16, code: &str, message: &str) -> Option<&'static str> {
    use operation::*;
    if looks_like_synced_user_rejection(code, message) {
        return Some(HINT_SYNCED_USER);
    }
    if looks_like_uniqueness_conflict(code, message) {
        return Some(HINT_UNIQUENESS);
    }
    match (status, operation) {
        (401, _) => Some(HINT_UNAUTHORIZED),
        (403, SET_CERTIFICATE_USER_IDS) => Some(HINT_WRITE_FORBIDDEN),
        (403, LIST_GROUP_MEMBERS | COUNT_GROUP_MEMBERS) => Some(HINT_MEMBERS_FORBIDDEN),
        (403, READ_USERS | FIND_CERTIFICATE_USER_ID_HOLDERS) => Some(HINT_USERS_FORBIDDEN),
        (403, GROUP_DELTA) => Some(HINT_MEMBERS_FORBIDDEN),
        (403, LIST_CLOUD_CAS) => Some(HINT_CLOUD_CA_FORBIDDEN),
        (403, LIST_LEAF_CERTIFICATES | LIST_CERTIFICATE_STATES) => Some(HINT_INTUNE_CERTIFICATES_FORBIDDEN),
        (
            403,
            CREATE_SUBSCRIPTION
            | LIST_SUBSCRIPTIONS
            | GET_SUBSCRIPTION
            | RENEW_SUBSCRIPTION
            | REAUTHORIZE_SUBSCRIPTION
            | DELETE_SUBSCRIPTION,
        ) => Some(HINT_SUBSCRIPTIONS_FORBIDDEN),
        (400, CREATE_SUBSCRIPTION) if message.to_ascii_lowercase().contains("validation") => {
            Some(HINT_SUBSCRIPTION_VALIDATION)
        }
        (404, LIST_GROUP_MEMBERS | COUNT_GROUP_MEMBERS) => Some(HINT_GROUP_NOT_FOUND),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_show_code_message_request_id_and_hint() {
        let body = br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation.","innerError":{"request-id":"abc-123","date":"2024-01-01T00:00:00"}}}"#;
        let error = GraphError::from_response(operation::SET_CERTIFICATE_USER_IDS, 403, None, body);
        let text = error.to_string();
        assert!(
            text.starts_with(
                "set certificateUserIds failed: HTTP 403 Authorization_RequestDenied: Insufficient privileges"
            ),
            "{text}"
        );
        assert!(text.contains("operation. (request-id abc-123). Hint: the app needs"), "{text}");
        assert!(text.contains("User.ReadWrite.All"), "{text}");
        assert!(text.contains("Privileged Authentication Administrator"), "{text}");
        assert_eq!(error.request_id(), Some("abc-123"));
    }

    #[test]
    fn odd_error_bodies_still_give_a_readable_error() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "(no error body)"),
            (b"<html>Bad gateway</html>", "<html>Bad gateway</html>"),
            (br#"{"error":{"message":{"lang":"en","value":"old style"}}}"#, "old style"),
            (br#"{"unexpected":true}"#, r#"{"unexpected":true}"#),
        ];
        for (body, expected) in cases {
            let error = GraphError::from_response(operation::READ_USERS, 400, Some("hdr-id".into()), body);
            let GraphError::Api { code, message, request_id, .. } = &error else { panic!("{error:?}") };
            assert_eq!(code, "BadRequest");
            assert_eq!(message, expected);
            assert_eq!(request_id.as_deref(), Some("hdr-id"));
        }
    }

    #[test]
    fn expired_delta_tokens_are_recognised_in_every_documented_form() {
        let error = |status, body: &[u8]| GraphError::from_response(operation::GROUP_DELTA, status, None, body);
        assert!(error(410, b"").is_delta_token_expired());
        assert!(error(400, br#"{"error":{"code":"syncStateNotFound","message":"x"}}"#).is_delta_token_expired());
        assert!(error(400, br#"{"error":{"code":"resyncRequired","message":"x"}}"#).is_delta_token_expired());
        assert!(
            !error(400, br#"{"error":{"code":"Request_UnsupportedQuery","message":"x"}}"#).is_delta_token_expired()
        );
        assert!(!error(404, b"").is_delta_token_expired());
    }

    #[test]
    fn conflicts_and_synced_users_are_recognised() {
        let conflict = GraphError::from_response(
            operation::SET_CERTIFICATE_USER_IDS,
            400,
            None,
            br#"{"error":{"code":"Request_BadRequest","message":"Another object with the same value for property certificateUserIds already exists."}}"#,
        );
        assert!(conflict.is_uniqueness_conflict());
        assert!(!conflict.is_synced_user_rejection());

        let synced = GraphError::from_response(
            operation::SET_CERTIFICATE_USER_IDS,
            400,
            None,
            br#"{"error":{"code":"Request_BadRequest","message":"Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration."}}"#,
        );
        assert!(synced.is_synced_user_rejection());
        assert!(synced.to_string().contains("migration. Hint: this user is synchronized"), "{synced}");
    }
}
