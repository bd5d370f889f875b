//! Shared access signatures signed with the account key, and the pipeline policy that puts a fresh one on every
//! request.
//!
//! `azure_storage_blob` 1.x has no shared-key authentication (Azure/azure-sdk-for-rust#2975), so for connection
//! strings we sign SAS tokens ourselves, following "Create a service SAS" and "Create an account SAS" (string-to-sign
//! layouts of version 2020-12-06 and later; the tokens say `sv=2022-11-02`). The token never sits in a client's URL:
//! [`SasPolicy`] adds it to each request, per try, just before the SDK's logging policy (which redacts `sig`) and the
//! transport. Tokens live one hour and are re-signed once less than [`REFRESH_MARGIN`] is left.

use std::sync::{Arc, Mutex};

use azure_core::http::{
    Context, Request, Url,
    policies::{Policy, PolicyResult},
};
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use secrecy::{ExposeSecret as _, SecretSlice};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};

/// `sv`: the signed version, which picks the string-to-sign layout.
pub(crate) const SAS_VERSION: &str = "2022-11-02";
/// How long a token is valid.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::hours(1);
/// Re-sign once less than this is left, so a request (and its SDK retries) never carries an expiring token.
pub(crate) const REFRESH_MARGIN: Duration = Duration::minutes(15);
/// Tokens start this far in the past, tolerating clock skew between us and the service.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Query parameter names a SAS token may contain; stripped from a request before the current token is added.
const SAS_PARAMETERS: &[&str] = &["sv", "ss", "srt", "sr", "sp", "st", "se", "spr", "sip", "ses", "sig"];

/// An account name and its key: the HMAC-SHA256 key for SAS signatures.
pub(crate) struct SharedKey {
    account: String,
    key: SecretSlice<u8>,
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKey").field("account", &self.account).field("key", &"[REDACTED]").finish()
    }
}

/// What a token grants.
#[derive(Debug, Clone)]
pub(crate) enum SasScope {
    /// Service SAS on one container (`sr=c`).
    Container { container: String, permissions: &'static str },
    /// Account SAS for the blob service (`ss=b`), e.g. `srt=c` + `sp=c` to create containers.
    Account { resource_types: &'static str, permissions: &'static str },
}

impl SharedKey {
    pub(crate) fn new(account: String, key: Vec<u8>) -> Self {
        SharedKey { account, key: SecretSlice::from(key) }
    }

    fn sign(&self, string_to_sign: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret()).expect("HMAC accepts any key length");
        mac.update(string_to_sign.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// A token for `scope`, valid from `now - CLOCK_SKEW` to `now + TOKEN_LIFETIME`. `https_only` sets `spr=https`.
    pub(crate) fn token(&self, scope: &SasScope, now: OffsetDateTime, https_only: bool) -> SasToken {
        let start = format_time(now - CLOCK_SKEW);
        let expiry_time = now + TOKEN_LIFETIME;
        let expiry = format_time(expiry_time);
        let protocol = if https_only { "https" } else { "" };
        let (string_to_sign, mut pairs) = match scope {
            SasScope::Container { container, permissions } => (
                service_string_to_sign(&self.account, container, permissions, &start, &expiry, protocol),
                vec![("sv", SAS_VERSION.to_owned()), ("sr", "c".to_owned()), ("sp", (*permissions).to_owned())],
            ),
            SasScope::Account { resource_types, permissions } => (
                account_string_to_sign(&self.account, permissions, resource_types, &start, &expiry, protocol),
                vec![
                    ("sv", SAS_VERSION.to_owned()),
                    ("ss", "b".to_owned()),
                    ("srt", (*resource_types).to_owned()),
                    ("sp", (*permissions).to_owned()),
                ],
            ),
        };
        pairs.push(("st", start));
        pairs.push(("se", expiry));
        if https_only {
            pairs.push(("spr", "https".to_owned()));
        }
        pairs.push(("sig", self.sign(&string_to_sign)));
        SasToken { pairs, expires: expiry_time }
    }
}

/// `YYYY-MM-DDThh:mm:ssZ`, the form SAS times take.
fn format_time(time: OffsetDateTime) -> String {
    let time = time.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).expect("0 ns is valid");
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time.format(&format).expect("a UTC time formats")
}

/// "Create a service SAS", version 2020-12-06 and later: permissions, start, expiry, canonicalized resource,
/// identifier, IP, protocol, version, resource, snapshot time, encryption scope, rscc, rscd, rsce, rscl, rsct.
fn service_string_to_sign(
    account: &str,
    container: &str,
    permissions: &str,
    start: &str,
    expiry: &str,
    protocol: &str,
) -> String {
    let resource = format!("/blob/{account}/{container}");
    [permissions, start, expiry, &resource, "", "", protocol, SAS_VERSION, "c", "", "", "", "", "", "", ""].join("\n")
}

/// "Create an account SAS", version 2020-12-06 and later: account, permissions, services, resource types, start,
/// expiry, IP, protocol, version, encryption scope, and a final newline.
fn account_string_to_sign(
    account: &str,
    permissions: &str,
    resource_types: &str,
    start: &str,
    expiry: &str,
    protocol: &str,
) -> String {
    [account, permissions, "b", resource_types, start, expiry, "", protocol, SAS_VERSION, "", ""].join("\n")
}

/// A signed token: its query parameters (unencoded) and when it expires.
#[derive(Clone)]
pub(crate) struct SasToken {
    pairs: Vec<(&'static str, String)>,
    expires: OffsetDateTime,
}

impl std::fmt::Debug for SasToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<_> = self
            .pairs
            .iter()
            .map(|(name, value)| (*name, if *name == "sig" { "[REDACTED]" } else { value.as_str() }))
            .collect();
        f.debug_struct("SasToken").field("pairs", &shown).field("expires", &self.expires).finish()
    }
}

impl SasToken {
    /// The token as a percent-encoded query string (`sv=…&…&sig=…`).
    pub(crate) fn query(&self) -> String {
        self.pairs.iter().map(|(name, value)| format!("{name}={}", encode(value))).collect::<Vec<_>>().join("&")
    }

    pub(crate) fn expires(&self) -> OffsetDateTime {
        self.expires
    }
}

fn encode(value: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(value, SET).to_string()
}

/// Replace any SAS parameters in `url`'s query with `token`, leaving the other parameters byte-for-byte as they were
/// (re-encoding them could change what the service sees, e.g. `+` in a prefix).
pub(crate) fn apply_token(url: &mut Url, token: &SasToken) {
    let kept: Vec<&str> = url
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|part| {
            let name = part.split('=').next().unwrap_or("");
            !part.is_empty() && !SAS_PARAMETERS.contains(&name)
        })
        .collect();
    let mut query = kept.join("&");
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(&token.query());
    url.set_query(Some(&query));
}

/// Pipeline policy (per try) that authorizes each request with a current SAS token for its scope.
pub(crate) struct SasPolicy {
    key: Arc<SharedKey>,
    scope: SasScope,
    https_only: bool,
    current: Mutex<Option<SasToken>>,
}

impl std::fmt::Debug for SasPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasPolicy")
            .field("key", &self.key)
            .field("scope", &self.scope)
            .field("https_only", &self.https_only)
            .finish_non_exhaustive()
    }
}

impl SasPolicy {
    pub(crate) fn new(key: Arc<SharedKey>, scope: SasScope, https_only: bool) -> Self {
        SasPolicy { key, scope, https_only, current: Mutex::new(None) }
    }

    /// The cached token, re-signed when it is missing or within [`REFRESH_MARGIN`] of expiry.
    pub(crate) fn token_at(&self, now: OffsetDateTime) -> SasToken {
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match current.as_ref() {
            Some(token) if token.expires() - now > REFRESH_MARGIN => token.clone(),
            _ => {
                let token = self.key.token(&self.scope, now, self.https_only);
                *current = Some(token.clone());
                token
            }
        }
    }
}

#[async_trait::async_trait]
impl Policy for SasPolicy {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        let token = self.token_at(OffsetDateTime::now_utc());
        apply_token(request.url_mut(), &token);
        next[0].send(ctx, request, &next[1..]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn key() -> SharedKey {
        SharedKey::new("devstoreaccount1".into(), b"0123456789abcdef".to_vec())
    }

    #[test]
    fn service_string_to_sign_follows_the_documented_layout() {
        let text =
            service_string_to_sign("acct", "state", "racwdl", "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", "https");
        assert_eq!(
            text,
            "racwdl\n2024-05-01T10:00:00Z\n2024-05-01T11:00:00Z\n/blob/acct/state\n\n\nhttps\n2022-11-02\nc\n\n\n\n\n\n\n"
        );
    }

    #[test]
    fn account_string_to_sign_ends_with_a_newline() {
        let text = account_string_to_sign("acct", "c", "c", "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", "");
        assert_eq!(text, "acct\nc\nb\nc\n2024-05-01T10:00:00Z\n2024-05-01T11:00:00Z\n\n\n2022-11-02\n\n");
    }

    #[test]
    fn signature_is_base64_hmac_sha256_of_the_string_to_sign() {
        // HMAC-SHA256(key = "key", "The quick brown fox jumps over the lazy dog") from RFC 4231-style vectors.
        let key = SharedKey::new("a".into(), b"key".to_vec());
        assert_eq!(
            key.sign("The quick brown fox jumps over the lazy dog"),
            "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="
        );
    }

    #[test]
    fn token_has_the_scope_times_and_an_encoded_signature() {
        let now = datetime!(2024-05-01 10:05:00.123 UTC);
        let scope = SasScope::Container { container: "state".into(), permissions: "racwdl" };
        let token = key().token(&scope, now, false);
        let query = token.query();
        assert!(
            query.starts_with(
                "sv=2022-11-02&sr=c&sp=racwdl&st=2024-05-01T10%3A00%3A00Z&se=2024-05-01T11%3A05%3A00Z&sig="
            ),
            "{query}"
        );
        assert!(!query.contains("spr="), "{query}");
        assert_eq!(token.expires(), datetime!(2024-05-01 11:05:00.123 UTC));
        let (_, signature) = token.pairs.iter().find(|(name, _)| *name == "sig").unwrap();
        let debug = format!("{token:?}");
        assert!(!debug.contains(signature.as_str()) && debug.contains("[REDACTED]"), "{debug}");
    }

    #[test]
    fn apply_token_replaces_an_old_token_and_keeps_other_parameters_verbatim() {
        let scope = SasScope::Container { container: "state".into(), permissions: "racwdl" };
        let old = key().token(&scope, datetime!(2024-05-01 10:00:00 UTC), false);
        let new = key().token(&scope, datetime!(2024-05-01 12:00:00 UTC), false);
        let mut url = Url::parse("http://127.0.0.1:1/devstoreaccount1/state?comp=list&prefix=a+b%2Fc").unwrap();
        apply_token(&mut url, &old);
        apply_token(&mut url, &new);
        assert_eq!(url.query().unwrap(), format!("comp=list&prefix=a+b%2Fc&{}", new.query()));
    }

    #[test]
    fn policy_reuses_a_token_until_the_refresh_margin() {
        let policy = SasPolicy::new(Arc::new(key()), SasScope::Account { resource_types: "c", permissions: "c" }, true);
        let start = datetime!(2024-05-01 10:00:00 UTC);
        let first = policy.token_at(start);
        assert_eq!(policy.token_at(start + Duration::minutes(44)).query(), first.query());
        let refreshed = policy.token_at(start + Duration::minutes(46));
        assert_ne!(refreshed.query(), first.query());
        assert!(refreshed.query().contains("spr=https"));
    }
}
