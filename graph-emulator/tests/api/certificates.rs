//! Certificate credentials: client assertions signed with the key of a certificate registered on the app, verified
//! with that certificate's public key. [certificate-credentials] [reference-error-codes]

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use graph_emulator::AppRegistration;
use rustls::SignatureScheme;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::SigningKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

const CERT_APP: &str = "77777777-0000-4000-8000-000000000007";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A self-signed certificate and its signing key.
struct Certificate {
    pem: String,
    der: Vec<u8>,
    key: Arc<dyn SigningKey>,
}

impl Certificate {
    fn new(algorithm: &'static rcgen::SignatureAlgorithm) -> Certificate {
        let key = rcgen::KeyPair::generate_for(algorithm).expect("key");
        let certificate = rcgen::CertificateParams::new(vec!["app.test".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Certificate {
            pem: certificate.pem(),
            der: certificate.der().to_vec(),
            key: rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).expect("signing key"),
        }
    }

    fn rsa() -> Certificate {
        Certificate::new(&rcgen::PKCS_RSA_SHA256)
    }

    fn s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.der))
    }
}

/// An emulator whose Tenant B has `CERT_APP`, known by `registered` only.
async fn spawn_with_certificate(registered: &Certificate) -> TestApp {
    let app = spawn().await;
    app.directory.add_app(
        TENANT_B,
        AppRegistration {
            client_id: CERT_APP.into(),
            client_secret: None,
            roles: vec!["User.ReadWrite.All".into()],
            federated_credentials: vec![],
        },
    );
    app.directory.add_app_certificate(TENANT_B, CERT_APP, &registered.pem);
    app
}

/// The claims the documentation lists, valid now for the tenant's token endpoint.
fn claims(app: &TestApp) -> Value {
    let now = app.directory.now().unix_timestamp();
    json!({
        "aud": app.token_url(TENANT_B),
        "iss": CERT_APP,
        "sub": CERT_APP,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    })
}

/// A JWS signed by `signer` with `scheme`, whatever the header says.
fn sign(header: &Value, claims: &Value, signer: &Certificate, scheme: SignatureScheme) -> String {
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = signer.key.choose_scheme(&[scheme]).expect("the key signs with the scheme").sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.expect("signed")))
}

fn ps256(certificate: &Certificate, claims: &Value) -> String {
    let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": certificate.s256()});
    sign(&header, claims, certificate, SignatureScheme::RSA_PSS_SHA256)
}

async fn present(app: &TestApp, assertion: &str) -> reqwest::Response {
    app.token_request(
        TENANT_B,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CERT_APP),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await
}

/// Status, `error`, the AADSTS code and the description.
async fn refusal(response: reqwest::Response) -> (u16, String, i64, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["error_codes"][0].as_i64().unwrap_or_default(),
        body["error_description"].as_str().unwrap_or_default().to_owned(),
    )
}

// [certificate-credentials] PS256 with x5t#S256, as the documentation shows: a Graph token for the app.
#[tokio::test]
async fn a_ps256_assertion_signed_by_a_registered_certificate_gets_a_graph_token() {
    let certificate = Certificate::rsa();
    let app = spawn_with_certificate(&certificate).await;

    let response = present(&app, &ps256(&certificate, &claims(&app))).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let token = crate::helpers::claims(body["access_token"].as_str().expect("access_token"));
    assert_eq!((token["tid"].as_str(), token["appid"].as_str()), (Some(TENANT_B), Some(CERT_APP)));
    assert_eq!(token["roles"], json!(["User.ReadWrite.All"]));
}

// [certificate-credentials] RS256 (PKCS#1 v1.5), the older documented algorithm, is accepted too.
#[tokio::test]
async fn an_rs256_assertion_is_accepted_too() {
    let certificate = Certificate::rsa();
    let app = spawn_with_certificate(&certificate).await;
    let header = json!({"alg": "RS256", "typ": "JWT", "x5t#S256": certificate.s256()});

    let response = present(&app, &sign(&header, &claims(&app), &certificate, SignatureScheme::RSA_PKCS1_SHA256)).await;

    assert_eq!(response.status(), 200);
}

// [reference-error-codes] AADSTS700027 "The key was not found": the thumbprint is of no certificate of the app.
#[tokio::test]
async fn a_certificate_not_registered_on_the_app_is_aadsts700027_key_not_found() {
    let app = spawn_with_certificate(&Certificate::rsa()).await;
    let stranger = Certificate::rsa();

    let (status, error, code, description) = refusal(present(&app, &ps256(&stranger, &claims(&app))).await).await;

    assert_eq!((status, error.as_str(), code), (401, "invalid_client", 700027));
    assert!(description.contains("The key was not found"), "{description}");
    assert!(description.contains(CERT_APP), "{description}");
}

// [reference-error-codes] AADSTS700027: the thumbprint of the registered certificate, the signature of another key;
// a claim changed after signing fails the same way.
#[tokio::test]
async fn a_signature_that_does_not_verify_is_aadsts700027_invalid_signature() {
    let certificate = Certificate::rsa();
    let app = spawn_with_certificate(&certificate).await;
    let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": certificate.s256()});
    let forged = sign(&header, &claims(&app), &Certificate::rsa(), SignatureScheme::RSA_PSS_SHA256);
    let genuine = ps256(&certificate, &claims(&app));
    let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
    let mut altered = claims(&app);
    altered["exp"] = json!(altered["exp"].as_i64().unwrap_or_default() + 86_400);
    parts[1] = URL_SAFE_NO_PAD.encode(altered.to_string());
    let tampered = parts.join(".");

    for assertion in [forged, tampered] {
        let (status, _, code, description) = refusal(present(&app, &assertion).await).await;
        assert_eq!((status, code), (401, 700027));
        assert!(description.contains("Client assertion contains an invalid signature"), "{description}");
    }
}

// [reference-error-codes] AADSTS700024: an assertion past its `exp`.
#[tokio::test]
async fn an_expired_assertion_is_aadsts700024() {
    let certificate = Certificate::rsa();
    let app = spawn_with_certificate(&certificate).await;
    let mut expired = claims(&app);
    expired["exp"] = json!(expired["nbf"].as_i64().unwrap_or_default() - 1);

    let (status, error, code, _) = refusal(present(&app, &ps256(&certificate, &expired)).await).await;

    assert_eq!((status, error.as_str(), code), (400, "invalid_client", 700024));
}

// [reference-error-codes] AADSTS700023: `aud` must be this tenant's token endpoint (not another tenant's, not the
// public cloud's).
#[tokio::test]
async fn an_audience_other_than_the_token_endpoint_is_aadsts700023() {
    let certificate = Certificate::rsa();
    let app = spawn_with_certificate(&certificate).await;
    for audience in [app.token_url(TENANT_A), format!("https://login.microsoftonline.com/{TENANT_B}/oauth2/v2.0/token")]
    {
        let mut wrong = claims(&app);
        wrong["aud"] = json!(audience);

        let (status, _, code, _) = refusal(present(&app, &ps256(&certificate, &wrong)).await).await;

        assert_eq!((status, code), (401, 700023), "{audience}");
    }
}

// [certificate-credentials] `iss` and `sub` are the client id: AADSTS700021 otherwise.
#[tokio::test]
async fn an_issuer_or_subject_other_than_the_client_is_aadsts700021() {
    let certificate = Certificate::rsa();
    let app = spawn_with_certificate(&certificate).await;
    for claim in ["iss", "sub"] {
        let mut wrong = claims(&app);
        wrong[claim] = json!(READER);

        let (status, _, code, _) = refusal(present(&app, &ps256(&certificate, &wrong)).await).await;

        assert_eq!((status, code), (401, 700021), "{claim}");
    }
}

// Entra accepts only RSA certificates: an ES256 assertion, even by a registered EC certificate, is AADSTS5002730.
#[tokio::test]
async fn an_es256_assertion_is_aadsts5002730_unsupported_key() {
    let certificate = Certificate::new(&rcgen::PKCS_ECDSA_P256_SHA256);
    let app = spawn_with_certificate(&certificate).await;
    let header = json!({"alg": "ES256", "typ": "JWT", "x5t#S256": certificate.s256()});

    let assertion = sign(&header, &claims(&app), &certificate, SignatureScheme::ECDSA_NISTP256_SHA256);
    let (status, error, code, _) = refusal(present(&app, &assertion).await).await;

    assert_eq!((status, error.as_str(), code), (400, "invalid_request", 5002730));
}
