//! The Entra token endpoint (client credentials with a secret, a certificate-signed assertion or a federated
//! assertion) and the App Service managed identity endpoint. Response shapes are those `azure_identity` 1.0 parses.
//! [v2-oauth2-client-creds-grant-flow] [certificate-credentials] [workload-identity-federation]
//! [overview-managed-identity] [reference-error-codes]

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::SignatureScheme;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use url::Url;

use crate::directory::lock;
use crate::faults::TokenFault;
use crate::jwt::Claims;
use crate::model::{RequestKind, RequestRecord};
use crate::state::{AppState, BaseUrl};

/// The audience of federated assertions. [workload-identity-federation]
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Access tokens live one hour.
const TOKEN_LIFETIME_SECS: i64 = 3599;
const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// Resources the emulated Entra knows besides Graph (tokens for them are refused by Graph: wrong audience).
const OTHER_RESOURCES: &[&str] =
    &["https://management.azure.com", "https://storage.azure.com", "https://vault.azure.net"];

/// The resource a scope or resource names, normalised, or `None` when Entra does not know it.
fn known_resource(resource: &str) -> Option<&'static str> {
    let r = resource.trim_end_matches('/');
    if r.eq_ignore_ascii_case(GRAPH_RESOURCE)
        || r.eq_ignore_ascii_case("https://graph.microsoft.com/v1.0")
        || r == "00000003-0000-0000-c000-000000000000"
    {
        return Some(GRAPH_RESOURCE);
    }
    OTHER_RESOURCES.iter().copied().find(|o| o.eq_ignore_ascii_case(r))
}

/// An AAD error: `{"error","error_description":"AADSTS…: …","error_codes",…}`.
struct AadError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl AadError {
    fn new(status: StatusCode, error: &'static str, code: u32, description: impl Into<String>) -> Self {
        Self { status, error, code, description: description.into() }
    }

    fn into_response(self, now: time::OffsetDateTime) -> Response {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let timestamp = now
            .format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z"))
            .unwrap_or_default();
        let body = serde_json::json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                self.code, self.description
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        (self.status, Json(body)).into_response()
    }
}

fn token_fault_error(fault: TokenFault) -> AadError {
    match fault {
        TokenFault::ServerError => AadError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            50000,
            "There was an error issuing a token or an issue with our sign-in service.",
        ),
        TokenFault::TemporarilyUnavailable => AadError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        ),
    }
}

fn missing_parameter(name: &str) -> AadError {
    AadError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// A token for `resource` issued to an app or managed identity.
pub(crate) fn issue_access_token(
    state: &AppState,
    tenant_id: &str,
    resource: &str,
    app_id: &str,
    object_id: &str,
    roles: &[String],
) -> (String, i64) {
    let now = state.directory.now().unix_timestamp();
    let exp = now + TOKEN_LIFETIME_SECS;
    let claims = Claims {
        aud: resource.to_owned(),
        iss: format!("https://sts.windows.net/{tenant_id}/"),
        tid: tenant_id.to_owned(),
        appid: app_id.to_owned(),
        oid: object_id.to_owned(),
        sub: object_id.to_owned(),
        roles: roles.to_vec(),
        iat: now,
        nbf: now - 300,
        exp,
        idtyp: Some("app".to_owned()),
        ver: Some("1.0".to_owned()),
    };
    (state.signer.sign(&claims), exp)
}

/// The issuer of the emulator's federated assertions for a tenant: `https://127.0.0.1:Q/{tenant}/v2.0`.
pub(crate) fn assertion_issuer(state: &AppState, tenant_id: &str) -> String {
    format!("{}{tenant_id}/v2.0", state.https_base)
}

fn log(
    state: &AppState,
    kind: RequestKind,
    tenant: Option<String>,
    app_id: Option<String>,
    method: &str,
    path: String,
    status: StatusCode,
) {
    state.directory.log_request(RequestRecord {
        at: state.directory.now(),
        tenant,
        app_id,
        method: method.to_owned(),
        path,
        status: status.as_u16(),
        kind,
        batch_items: None,
        via_batch: false,
        request_id: uuid::Uuid::new_v4().to_string(),
    });
}

/// `POST /{tenant}/oauth2/v2.0/token`, client credentials grant. [v2-oauth2-client-creds-grant-flow]
pub(crate) async fn token(
    State(state): State<Arc<AppState>>,
    Path(tenant_id): Path<String>,
    Extension(BaseUrl(base)): Extension<BaseUrl>,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let app_id = form.get("client_id").cloned();
    let (status, response) = match issue_token(&state, &base, &tenant_id, &form) {
        Ok(body) => (StatusCode::OK, (StatusCode::OK, Json(body)).into_response()),
        Err(e) => (e.status, e.into_response(state.directory.now())),
    };
    log(
        &state,
        RequestKind::Token,
        Some(tenant_id.clone()),
        app_id,
        "POST",
        format!("/{tenant_id}/oauth2/v2.0/token"),
        status,
    );
    response
}

fn issue_token(
    state: &AppState,
    base: &Url,
    tenant_id: &str,
    form: &HashMap<String, String>,
) -> Result<serde_json::Value, AadError> {
    if let Some(fault) = lock(&state.faults).token_fault() {
        return Err(token_fault_error(fault));
    }
    let Some(tenant) = state.directory.tenant(tenant_id) else {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant_id}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        ));
    };
    let grant_type = form.get("grant_type").ok_or_else(|| missing_parameter("grant_type"))?;
    if grant_type != "client_credentials" {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        ));
    }
    let client_id = form.get("client_id").ok_or_else(|| missing_parameter("client_id"))?;
    let scope = form.get("scope").ok_or_else(|| missing_parameter("scope"))?;
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let resource_scope = match scopes.as_slice() {
        [one] => one.strip_suffix("/.default"),
        _ => None,
    };
    let Some(resource_scope) = resource_scope else {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    };
    let Some(resource) = known_resource(resource_scope) else {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource_scope} was not found in the tenant named {tenant_id}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        ));
    };
    let (app, certificates) = {
        let data = tenant.read();
        (data.apps.get(client_id).cloned(), data.app_certificates.get(client_id).cloned().unwrap_or_default())
    };
    let Some(app) = app else {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant_id}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        ));
    };
    match (form.get("client_secret"), form.get("client_assertion")) {
        (Some(secret), _) => {
            if app.registration.client_secret.as_deref() != Some(secret.as_str()) {
                return Err(AadError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                ));
            }
        }
        (None, Some(assertion)) => {
            if form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
                return Err(AadError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    50027,
                    "Invalid client_assertion_type: expected urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
                ));
            }
            if is_certificate_assertion(assertion) {
                let audiences = token_endpoints(state, base, tenant_id);
                check_certificate_assertion(state, &audiences, client_id, &certificates, assertion)?;
            } else {
                check_assertion(state, &app.registration, assertion)?;
            }
        }
        (None, None) => {
            return Err(AadError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ));
        }
    }
    let (access_token, _) =
        issue_access_token(state, tenant_id, resource, client_id, &app.service_principal_id, &app.registration.roles);
    Ok(serde_json::json!({
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECS,
        "ext_expires_in": TOKEN_LIFETIME_SECS,
        "access_token": access_token,
    }))
}

/// A federated assertion must be one the emulator issued, in its lifetime, and match a federated identity
/// credential of the app exactly (issuer, subject, audience; case-sensitive). [workload-identity-federation]
fn check_assertion(state: &AppState, app: &crate::model::AppRegistration, assertion: &str) -> Result<(), AadError> {
    let claims = state.signer.verify(assertion).map_err(|_| {
        AadError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
        )
    })?;
    let now = state.directory.now().unix_timestamp();
    if claims.exp <= now || claims.nbf > now {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    let matching = app
        .federated_credentials
        .iter()
        .any(|f| f.issuer == claims.iss && f.subject == claims.sub && f.audience == claims.aud);
    if matching {
        return Ok(());
    }
    if app.federated_credentials.iter().any(|f| f.issuer == claims.iss) {
        return Err(AadError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700213,
            format!(
                "No matching federated identity record found for presented assertion subject '{}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
                claims.sub
            ),
        ));
    }
    Err(AadError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        70021,
        format!(
            "No matching federated identity record found for presented assertion. Assertion Issuer: '{}'. Assertion Subject: '{}'. Assertion Audience: '{}'.",
            claims.iss, claims.sub, claims.aud
        ),
    ))
}

/// The documentation page named in Entra's certificate assertion errors.
const CERTIFICATE_CREDENTIALS_DOC: &str =
    "https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials";
/// Entra tolerates this much clock skew on `nbf`.
const ASSERTION_SKEW_SECS: i64 = 300;

/// The JOSE header of a client assertion, as far as Entra reads it.
#[derive(Debug, Default, Deserialize)]
struct AssertionHeader {
    #[serde(default)]
    alg: String,
    /// Base64url SHA-1 thumbprint of the certificate's DER (the legacy form; `azure_identity`'s own certificate
    /// credential sends only this one, with RS256).
    #[serde(default)]
    x5t: Option<String>,
    /// Base64url SHA-256 thumbprint: what the current documentation asks for, with PS256.
    #[serde(default, rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

/// The claims of a client assertion. [certificate-credentials] "Claims (payload)"
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    #[serde(default)]
    aud: String,
    #[serde(default)]
    iss: String,
    #[serde(default)]
    sub: String,
    exp: Option<i64>,
    nbf: Option<i64>,
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// An assertion naming a certificate thumbprint is a certificate credential; anything else is taken for a federated
/// assertion (the emulator's own, HS256, no thumbprint).
fn is_certificate_assertion(assertion: &str) -> bool {
    let header = assertion.split('.').next().and_then(decode_part::<AssertionHeader>);
    header.is_some_and(|h| h.x5t.is_some() || h.x5t_s256.is_some())
}

/// The token endpoint URLs a certificate assertion may name as `aud` for this tenant: on the listener the request
/// came in on and on the HTTPS listener (the authority host).
fn token_endpoints(state: &AppState, base: &Url, tenant_id: &str) -> Vec<String> {
    let mut endpoints = vec![format!("{base}{tenant_id}/oauth2/v2.0/token")];
    let https = format!("{}{tenant_id}/oauth2/v2.0/token", state.https_base);
    if !endpoints.contains(&https) {
        endpoints.push(https);
    }
    endpoints
}

fn invalid_client(code: u32, description: String) -> AadError {
    AadError::new(StatusCode::UNAUTHORIZED, "invalid_client", code, description)
}

fn malformed_assertion() -> AadError {
    AadError::new(StatusCode::BAD_REQUEST, "invalid_request", 50027, "JWT token is invalid or malformed.")
}

/// A certificate-signed client assertion: issued by the app to itself, for this tenant's token endpoint, in its
/// lifetime, naming (by thumbprint) a certificate registered on the app and signed by that certificate's key with
/// RS256 or PS256. Entra accepts only RSA certificates: ES256 and other algorithms are refused. The certificate's own
/// validity period is not checked (Entra checks the key credential's, which the emulator does not model).
/// [certificate-credentials] [reference-error-codes]
fn check_certificate_assertion(
    state: &AppState,
    audiences: &[String],
    client_id: &str,
    certificates: &[Vec<u8>],
    assertion: &str,
) -> Result<(), AadError> {
    let mut parts = assertion.split('.');
    let (Some(header_part), Some(claims_part), Some(signature_part), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed_assertion());
    };
    let header: AssertionHeader = decode_part(header_part).ok_or_else(malformed_assertion)?;
    let claims: AssertionClaims = decode_part(claims_part).ok_or_else(malformed_assertion)?;
    let signature = URL_SAFE_NO_PAD.decode(signature_part).map_err(|_| malformed_assertion())?;

    if claims.iss != client_id || claims.sub != client_id {
        return Err(invalid_client(
            700021,
            format!(
                "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at {CERTIFICATE_CREDENTIALS_DOC} ."
            ),
        ));
    }
    if !audiences.contains(&claims.aud) {
        return Err(invalid_client(
            700023,
            format!(
                "Client assertion audience claim does not match Realm issuer. Review the documentation at {CERTIFICATE_CREDENTIALS_DOC} ."
            ),
        ));
    }
    let now = state.directory.now().unix_timestamp();
    let (Some(exp), nbf) = (claims.exp, claims.nbf.unwrap_or(i64::MIN)) else {
        return Err(malformed_assertion());
    };
    if exp <= now || nbf > now + ASSERTION_SKEW_SECS {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, expiry time of assertion {}. Review the documentation at {CERTIFICATE_CREDENTIALS_DOC} .",
                rfc3339(now),
                rfc3339(exp)
            ),
        ));
    }

    // The thumbprint shown in errors is upper-case hex, as Entra shows it.
    let (found, shown) = match (&header.x5t_s256, &header.x5t) {
        (Some(s256), _) => {
            let found = certificates.iter().find(|der| x5t_s256(der) == *s256);
            (found, thumbprint_hex(s256))
        }
        (None, Some(sha1)) => {
            let found = certificates.iter().find(|der| x5t(der) == *sha1);
            (found, thumbprint_hex(sha1))
        }
        (None, None) => return Err(malformed_assertion()),
    };
    let Some(certificate) = found else {
        return Err(invalid_client(
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{shown}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]"
            ),
        ));
    };
    let scheme = match header.alg.as_str() {
        "RS256" => SignatureScheme::RSA_PKCS1_SHA256,
        "PS256" => SignatureScheme::RSA_PSS_SHA256,
        _ => return Err(unsupported_key()),
    };
    let message = format!("{header_part}.{claims_part}");
    match verify_signature(certificate, scheme, message.as_bytes(), &signature) {
        SignatureCheck::Valid => Ok(()),
        SignatureCheck::UnsupportedKey => Err(unsupported_key()),
        SignatureCheck::Invalid => Err(invalid_client(
            700027,
            format!(
                "Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '{shown}']"
            ),
        )),
    }
}

fn unsupported_key() -> AadError {
    AadError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        5002730,
        "Invalid JWT token. Unsupported key for the signing algorithm.",
    )
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// A base64url thumbprint as upper-case hex; the raw text when it is not base64url.
fn thumbprint_hex(thumbprint: &str) -> String {
    match URL_SAFE_NO_PAD.decode(thumbprint) {
        Ok(bytes) => bytes.iter().map(|b| format!("{b:02X}")).collect(),
        Err(_) => thumbprint.to_owned(),
    }
}

enum SignatureCheck {
    Valid,
    Invalid,
    /// The certificate's key cannot make this kind of signature (an EC key for RS256, a short RSA key).
    UnsupportedKey,
}

/// Verifies a JWS signature with the certificate's public key through rustls' aws-lc-rs verification algorithms
/// (the ones that check TLS handshakes): the algorithm for the scheme whose key type is the certificate's.
fn verify_signature(certificate: &[u8], scheme: SignatureScheme, message: &[u8], signature: &[u8]) -> SignatureCheck {
    let der = CertificateDer::from(certificate);
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(&der) else {
        return SignatureCheck::UnsupportedKey;
    };
    let spki = parsed.subject_public_key_info();
    let Some((algorithm_id, public_key)) = split_spki(spki.as_ref()) else {
        return SignatureCheck::UnsupportedKey;
    };
    let algorithms = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
    let candidates = algorithms.mapping.iter().filter(|(s, _)| *s == scheme).flat_map(|(_, algs)| algs.iter());
    let mut any = false;
    for algorithm in candidates.filter(|a| a.public_key_alg_id().as_ref() == algorithm_id) {
        any = true;
        if algorithm.verify_signature(public_key, message, signature).is_ok() {
            return SignatureCheck::Valid;
        }
    }
    if any { SignatureCheck::Invalid } else { SignatureCheck::UnsupportedKey }
}

/// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }`: the
/// AlgorithmIdentifier's contents and the key bits, as webpki's verification algorithms take them.
fn split_spki(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, inner, _) = der_element(spki)? else { return None };
    let (0x30, algorithm, rest) = der_element(inner)? else { return None };
    let (0x03, bits, _) = der_element(rest)? else { return None };
    let (0, key) = bits.split_first()? else { return None };
    Some((algorithm, key))
}

/// One DER element: tag, contents, what follows.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        (bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b)), rest)
    };
    if rest.len() < length {
        return None;
    }
    let (contents, rest) = rest.split_at(length);
    Some((tag, contents, rest))
}

/// `x5t#S256`: the base64url SHA-256 of the certificate's DER. [certificate-credentials]
fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// `x5t`: the base64url SHA-1 of the certificate's DER, the legacy thumbprint (SHA-1 from the `sha1` crate, which
/// `pki` also uses for the certificates' thumbprints).
fn x5t(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha1::digest(der))
}

fn msi_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({
            "statusCode": status.as_u16(),
            "message": message,
            "correlationId": uuid::Uuid::new_v4().to_string(),
        })),
    )
        .into_response()
}

/// `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=…[&client_id=…|&object_id=…|&principal_id=…]`
/// with `X-IDENTITY-HEADER`. [overview-managed-identity] "REST endpoint reference"
pub(crate) async fn managed_identity(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let query: HashMap<String, String> = url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect();
    let (status, tenant, app_id, response) = managed_identity_token(&state, &headers, &query);
    log(&state, RequestKind::ManagedIdentity, tenant, app_id, "GET", format!("/msi/token?{raw}"), status);
    response
}

fn managed_identity_token(
    state: &AppState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> (StatusCode, Option<String>, Option<String>, Response) {
    let fail = |status: StatusCode, message: &str| (status, None, None, msi_error(status, message));
    let secret = headers.get("x-identity-header").and_then(|v| v.to_str().ok());
    if secret != Some(state.msi_header.as_str()) {
        return fail(StatusCode::UNAUTHORIZED, "The X-IDENTITY-HEADER header is missing or invalid.");
    }
    if lock(&state.faults).token_fault().is_some() {
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "An unexpected error occurred while fetching the token.");
    }
    if query.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return fail(StatusCode::BAD_REQUEST, "The api-version is missing or not supported: use 2019-08-01.");
    }
    let Some(resource) = query.get("resource") else {
        return fail(StatusCode::BAD_REQUEST, "The resource parameter is required.");
    };
    let client_id = query.get("client_id").map(String::as_str);
    let object_id = query.get("object_id").or_else(|| query.get("principal_id")).map(String::as_str);
    let Some((tenant_id, mi)) = state.directory.find_managed_identity(client_id, object_id) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "No Managed Identity found for specified ClientId/ResourceId/PrincipalId.",
        );
    };
    let now = state.directory.now().unix_timestamp();
    let (access_token, expires_on) = if resource.trim_end_matches('/') == TOKEN_EXCHANGE_AUDIENCE {
        // The secretless federated path: an assertion the other tenant's app trusts. [workload-identity-federation]
        let exp = now + TOKEN_LIFETIME_SECS;
        let claims = Claims {
            aud: TOKEN_EXCHANGE_AUDIENCE.to_owned(),
            iss: assertion_issuer(state, &tenant_id),
            tid: tenant_id.clone(),
            appid: mi.client_id.clone(),
            oid: mi.object_id.clone(),
            sub: mi.object_id.clone(),
            roles: Vec::new(),
            iat: now,
            nbf: now - 300,
            exp,
            idtyp: Some("app".to_owned()),
            ver: Some("2.0".to_owned()),
        };
        (state.signer.sign(&claims), exp)
    } else if let Some(known) = known_resource(resource) {
        issue_access_token(state, &tenant_id, known, &mi.client_id, &mi.object_id, &mi.roles)
    } else {
        let message = format!(
            "AADSTS500011: The resource principal named {resource} was not found in the tenant named {tenant_id}."
        );
        return (
            StatusCode::BAD_REQUEST,
            Some(tenant_id),
            Some(mi.client_id),
            msi_error(StatusCode::BAD_REQUEST, &message),
        );
    };
    let body = serde_json::json!({
        "access_token": access_token,
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": mi.client_id,
    });
    (StatusCode::OK, Some(tenant_id), Some(mi.client_id), (StatusCode::OK, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thumbprints_are_base64url_sha1_and_sha256_as_fips_180_computes_them() {
        // FIPS 180 test vectors, shown as the upper-case hex Entra's errors print.
        for (input, sha1) in [
            (&b"abc"[..], "A9993E364706816ABA3E25717850C26C9CD0D89D"),
            (b"", "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709"),
            (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983E441C3BD26EBAAE4AA1F95129E5E54670F1"),
            (&[b'a'; 1000], "291E9A6C66994949B57BA5E650361E98FC36B1BA"),
        ] {
            assert_eq!(thumbprint_hex(&x5t(input)), sha1, "x5t of {} bytes", input.len());
        }
        assert_eq!(x5t(b"abc"), "qZk-NkcGgWq6PiVxeFDCbJzQ2J0", "base64url without padding");
        assert_eq!(
            thumbprint_hex(&x5t_s256(b"abc")),
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        );
    }

    #[test]
    fn der_lengths_in_short_and_long_form_are_read() {
        assert_eq!(der_element(&[0x30, 0x01, 0xaa, 0xbb]), Some((0x30, &[0xaa][..], &[0xbb][..])));
        let long = [&[0x04, 0x81, 0x80][..], &[7u8; 0x80]].concat();
        assert_eq!(der_element(&long).map(|(tag, c, r)| (tag, c.len(), r.len())), Some((0x04, 0x80, 0)));
        assert_eq!(der_element(&[0x30, 0x05, 0x00]), None, "truncated");
    }
}
