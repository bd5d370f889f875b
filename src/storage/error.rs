//! The storage layer's error type, and the redaction that keeps secrets out of it.
//!
//! Every message is written for the administrator who reads it in Application Insights: it names the blob and what
//! to check. None of them may carry an account key, a SAS signature or a bearer token, so errors from the SDK and the
//! HTTP stack are never kept as they are: [`BackendError`] flattens their chain into text and redacts it first
//! (a `reqwest` error prints the full request URL, SAS query included).

use std::fmt;

/// What went wrong in a [`BlobStore`](super::BlobStore) call.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The optimistic-concurrency check failed: the blob changed since it was read, or it exists when the caller
    /// expected it not to.
    #[error("blob `{blob}` was changed by another writer since it was read (or already exists); re-read it and retry")]
    ConditionNotMet { blob: String },

    /// The blob is leased by someone else, so it cannot be written.
    #[error("blob `{blob}` is leased by another process; it cannot be written until that lease is released or expires")]
    LeaseHeld { blob: String },

    /// The lease this process held is gone: it expired and another process took it (or the blob was deleted).
    #[error("the lease on blob `{blob}` was lost: it expired and another process took it, or the blob was deleted")]
    LeaseLost { blob: String },

    /// The blob's content cannot be understood. It is left as it is for a human to inspect.
    #[error(
        "blob `{blob}` is corrupt ({reason}); it is never replaced automatically: inspect it, then fix or delete it"
    )]
    Corrupt { blob: String, reason: String },

    /// The storage service (or the local directory) could not be reached or refused the request.
    #[error("blob storage operation `{operation}` on `{blob}` failed")]
    Unavailable {
        operation: &'static str,
        blob: String,
        #[source]
        source: BackendError,
    },

    /// The storage settings cannot be used (malformed connection string, missing credential, …).
    #[error("invalid storage setting: {0}")]
    InvalidConnection(String),
}

impl StorageError {
    /// Whether retrying the same call later may succeed (throttling, timeouts, connection failures, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Unavailable { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    pub(crate) fn unavailable(operation: &'static str, blob: &str, source: BackendError) -> Self {
        StorageError::Unavailable { operation, blob: blob.to_owned(), source }
    }
}

/// A failure reported by the storage backend, already redacted: an HTTP status and service error code when there
/// was a response, and the text of the underlying error chain.
#[derive(Debug, Clone)]
pub struct BackendError {
    status: Option<u16>,
    code: Option<String>,
    detail: String,
}

/// Longest detail kept: a service error body can be a whole XML document.
const MAX_DETAIL_CHARS: usize = 600;

impl BackendError {
    pub(crate) fn new(status: Option<u16>, code: Option<String>, detail: &str) -> Self {
        // A storage error body is XML (`<Error><Code/><Message/>…`): keep its message, on one line.
        let detail = match xml_element(detail, "Message") {
            Some(message) => match xml_element(detail, "AuthenticationErrorDetail") {
                Some(auth) => format!("{message} {auth}"),
                None => message.to_owned(),
            },
            None => detail.to_owned(),
        };
        let mut detail = redact(&detail.split_whitespace().collect::<Vec<_>>().join(" "));
        if detail.chars().count() > MAX_DETAIL_CHARS {
            detail = detail.chars().take(MAX_DETAIL_CHARS).collect::<String>() + "…";
        }
        BackendError { status, code, detail }
    }

    /// Flatten an SDK error (and its sources) into redacted text. `secrets` are removed verbatim as well
    /// (the account key, in case some layer echoes it).
    pub(crate) fn from_azure(error: &azure_core::Error, secrets: &[&str]) -> Self {
        let status = error.http_status().map(u16::from);
        use azure_core::error::ErrorKind;
        let code = match error.kind() {
            ErrorKind::HttpResponse { error_code, .. } => error_code.clone(),
            ErrorKind::Connection => Some("Connection".to_owned()),
            ErrorKind::Io => Some("Io".to_owned()),
            ErrorKind::Credential => Some("Credential".to_owned()),
            ErrorKind::DataConversion => Some("DataConversion".to_owned()),
            _ => None,
        };
        let mut detail = error_chain(error);
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            detail = detail.replace(secret, REDACTED);
        }
        BackendError::new(status, code, &detail)
    }

    pub(crate) fn from_io(error: &std::io::Error) -> Self {
        BackendError::new(None, Some(format!("{:?}", error.kind())), &error.to_string())
    }

    /// HTTP status of the failed response, if the service answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The storage service's error code (`x-ms-error-code`), e.g. `AuthorizationPermissionMismatch`; without a
    /// response, the kind of failure (`Connection`, `Io`, `Credential`, or an I/O error kind such as `NotFound`).
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Throttling (429/503), timeouts (408), server errors (5xx) and failures without any response.
    pub fn is_transient(&self) -> bool {
        match self.status {
            None => {
                matches!(self.code.as_deref(), Some("Connection" | "Io" | "TimedOut" | "Interrupted" | "WouldBlock"))
            }
            Some(status) => matches!(status, 408 | 429 | 500..=599),
        }
    }

    fn hint(&self) -> &'static str {
        match (self.status, self.code.as_deref()) {
            (Some(401 | 403), _) => {
                " (check the account key of the connection string, or that the identity has the \
                 'Storage Blob Data Contributor' role on the storage account or container)"
            }
            (Some(404), Some("ContainerNotFound")) => {
                " (the container was deleted after start-up; restart the app to create it again)"
            }
            (Some(429 | 503), _) => " (the storage account is throttling requests; later runs retry)",
            (None, Some("Credential")) => {
                " (the identity could not get a token for Azure Storage: check the managed identity and the \
                 __clientId setting)"
            }
            (None, Some("Connection" | "Io")) => {
                " (check that the blob endpoint is reachable: the BlobEndpoint / blobServiceUri setting, \
                 DNS, firewall or private endpoint)"
            }
            _ => "",
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, &self.code) {
            (Some(status), Some(code)) => write!(f, "HTTP {status} {code}: ")?,
            (Some(status), None) => write!(f, "HTTP {status}: ")?,
            (None, _) => {}
        }
        write!(f, "{}{}", self.detail, self.hint())
    }
}

impl std::error::Error for BackendError {}

/// The text of the first `<name>…</name>` element in `text`, if any.
fn xml_element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(text[start..end].trim())
}

/// The text that replaces a secret.
pub(crate) const REDACTED: &str = "REDACTED";

/// The error chain (`crate::error_chain`), with SDK connection failures labelled.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = crate::error_chain(error);
    // An SDK error wraps its cause as `Custom` (the Display shows the cause), so classify connection failures here.
    if let Some(kind) = error.downcast_ref::<azure_core::Error>().map(azure_core::Error::kind) {
        match kind {
            azure_core::error::ErrorKind::Connection => text.insert_str(0, "connection failed: "),
            azure_core::error::ErrorKind::Io => text.insert_str(0, "I/O error: "),
            _ => {}
        }
    }
    text
}

/// Remove credentials that may appear in free text: the value of a `sig=` query parameter (SAS signature, plain or
/// percent-encoded), of `AccountKey=` in a connection string, and `Bearer` tokens.
pub(crate) fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for marker in ["sig=", "sig%3d", "accountkey=", "bearer "] {
        out = redact_after(&out, marker);
    }
    out
}

/// Replace the value following each (ASCII case-insensitive) occurrence of `marker` up to a delimiter.
fn redact_after(text: &str, marker: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    while let Some(found) = lower[cursor..].find(marker) {
        let value_start = cursor + found + marker.len();
        out.push_str(&text[cursor..value_start]);
        let value_len = text[value_start..]
            .find(|c: char| c == '&' || c == ';' || c == '"' || c == '\'' || c == '<' || c == ')' || c.is_whitespace())
            .unwrap_or(text.len() - value_start);
        if value_len > 0 {
            out.push_str(REDACTED);
        }
        cursor = value_start + value_len;
    }
    out.push_str(&text[cursor..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_sas_signature_account_key_and_bearer_token() {
        let cases = [
            (
                "error sending request for url (http://h/c/b?sv=2022-11-02&sig=abc%2Bdef%3D&sp=r)",
                "error sending request for url (http://h/c/b?sv=2022-11-02&sig=REDACTED&sp=r)",
            ),
            ("x?SIG=abc", "x?SIG=REDACTED"),
            ("AccountName=a;AccountKey=k3y==;BlobEndpoint=x", "AccountName=a;AccountKey=REDACTED;BlobEndpoint=x"),
            ("Authorization: Bearer eyJ0eXAi.abc.def", "Authorization: Bearer REDACTED"),
            ("url%3Fsig%3Dabc%26x", "url%3Fsig%3DREDACTED"),
            ("nothing secret here", "nothing secret here"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "redacting {input:?}");
        }
    }

    #[test]
    fn backend_error_keeps_status_and_code_and_adds_an_actionable_hint() {
        let error = BackendError::new(Some(403), Some("AuthenticationFailed".into()), "Server failed to authenticate");
        let text = error.to_string();
        assert!(text.starts_with("HTTP 403 AuthenticationFailed: Server failed"), "{text}");
        assert!(text.contains("Storage Blob Data Contributor"), "{text}");
        assert!(!error.is_transient());
        assert!(BackendError::new(Some(503), None, "busy").is_transient());
    }

    #[test]
    fn backend_error_keeps_only_the_message_of_an_xml_error_body_on_one_line() {
        let body = "403: <?xml version=\"1.0\"?>\n<Error>\n  <Code>AuthenticationFailed</Code>\n  \
                    <Message>Server failed to authenticate the request.\nRequestId:1</Message>\n  \
                    <AuthenticationErrorDetail>Signature did not match.</AuthenticationErrorDetail>\n</Error>";
        let error = BackendError::new(Some(403), Some("AuthenticationFailed".into()), body);
        assert_eq!(error.detail, "Server failed to authenticate the request. RequestId:1 Signature did not match.");
    }
}
