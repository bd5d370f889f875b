//! Token endpoint and managed identity endpoint, raw and through the real `azure_identity` 1.0 credentials.
//! [v2-oauth2-client-creds-grant-flow] [workload-identity-federation] [overview-managed-identity] [reference-error-codes]

use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientMethodOptions, ClientOptions, Transport};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions,
};
use serde_json::Value;

use crate::helpers::*;

const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

fn client_options(app: &TestApp) -> ClientOptions {
    let mut custom = CustomConfiguration::default();
    custom.authority_host = app.emulator.authority_host().to_string();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(app.client.clone()))),
        cloud: Some(Arc::new(CloudConfiguration::from(custom))),
        ..ClientOptions::default()
    }
}

async fn aad_error(response: reqwest::Response) -> (u16, String, Vec<i64>, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json");
    for field in ["timestamp", "trace_id", "correlation_id"] {
        assert!(body[field].is_string(), "{field} in {body}");
    }
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["error_codes"].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default(),
        body["error_description"].as_str().unwrap_or_default().to_owned(),
    )
}

// [v2-oauth2-client-creds-grant-flow] the real ClientSecretCredential gets a Graph token with the app's roles.
#[tokio::test]
async fn client_secret_credential_gets_a_graph_token() {
    let app = spawn().await;
    let credential = ClientSecretCredential::new(
        TENANT_A,
        READER.to_owned(),
        READER_SECRET.to_owned().into(),
        Some(ClientSecretCredentialOptions { client_options: client_options(&app) }),
    )
    .expect("credential");
    let token = credential.get_token(&[GRAPH_SCOPE], None).await.expect("token");
    let claims = claims(token.token.secret());
    assert_eq!(claims["tid"], TENANT_A);
    assert_eq!(claims["appid"], READER);
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["roles"], serde_json::json!(["GroupMember.Read.All", "User.Read.All"]));
    let response = app.get(token.token.secret(), "groups/none/members").await;
    assert_eq!(response.status(), 404, "the token is accepted by Graph");
}

// [reference-error-codes] AADSTS7000215 for a wrong secret, surfaced by the real credential as an error.
#[tokio::test]
async fn a_wrong_secret_is_aadsts7000215() {
    let app = spawn().await;
    let response = app
        .token_request(
            TENANT_A,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", READER),
                ("client_secret", "wrong"),
                ("scope", GRAPH_SCOPE),
            ],
        )
        .await;
    let (status, error, codes, description) = aad_error(response).await;
    assert_eq!((status, error.as_str(), codes), (401, "invalid_client", vec![7000215]));
    assert!(description.starts_with("AADSTS7000215: "), "{description}");

    let credential = ClientSecretCredential::new(
        TENANT_A,
        READER.to_owned(),
        "wrong".to_owned().into(),
        Some(ClientSecretCredentialOptions { client_options: client_options(&app) }),
    )
    .expect("credential");
    let err = credential.get_token(&[GRAPH_SCOPE], None).await.unwrap_err();
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");
}

// [reference-error-codes] AADSTS90002 unknown tenant, AADSTS700016 unknown app, AADSTS1002012 scope without /.default.
#[tokio::test]
async fn unknown_tenant_unknown_app_and_bad_scope_are_refused_with_their_codes() {
    let app = spawn().await;
    let form = |client_id: &'static str, scope: &'static str| {
        [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", READER_SECRET),
            ("scope", scope),
        ]
    };
    let cases = [
        ("unknown-tenant", READER, GRAPH_SCOPE, 400, 90002),
        (TENANT_A, "99999999-0000-4000-8000-000000000009", GRAPH_SCOPE, 400, 700016),
        (TENANT_A, READER, "https://graph.microsoft.com/User.Read.All", 400, 1002012),
        (TENANT_B, READER, GRAPH_SCOPE, 400, 700016),
    ];
    for (tenant, client_id, scope, status, code) in cases {
        let response = app.token_request(tenant, &form(client_id, scope)).await;
        let (actual_status, _, codes, _) = aad_error(response).await;
        assert_eq!((actual_status, codes), (status, vec![code]), "{tenant} {client_id} {scope}");
    }
}

// [overview-managed-identity] the App Service endpoint needs X-IDENTITY-HEADER and answers with expires_on as a string.
#[tokio::test]
async fn managed_identity_endpoint_requires_the_identity_header() {
    let app = spawn().await;
    let header = app.emulator.managed_identity_header().to_owned();
    let response = app.managed_identity("https://graph.microsoft.com", &header).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(body["expires_on"].is_string(), "expires_on is a string: {body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], "https://graph.microsoft.com");
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(claims(token)["oid"], MI_OBJECT_ID);
    assert_eq!(app.get(token, "users/nobody").await.status(), 404, "Graph accepts it");

    let wrong = app.managed_identity("https://graph.microsoft.com", "wrong").await;
    assert_eq!(wrong.status(), 401);
}

/// Gets the managed identity's federated assertion from the App Service endpoint, as the product does.
#[derive(Debug)]
struct ManagedIdentityAssertion {
    client: reqwest::Client,
    endpoint: url::Url,
    header: String,
}

#[async_trait::async_trait]
impl ClientAssertion for ManagedIdentityAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let body: Value = self
            .client
            .get(self.endpoint.clone())
            .query(&[
                ("api-version", "2019-08-01"),
                ("resource", graph_emulator::TOKEN_EXCHANGE_AUDIENCE),
                ("client_id", MI_CLIENT_ID),
            ])
            .header("X-IDENTITY-HEADER", &self.header)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.to_string()))?
            .json()
            .await
            .map_err(|e| azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.to_string()))?;
        Ok(body["access_token"].as_str().unwrap_or_default().to_owned())
    }
}

// [workload-identity-federation] the secretless path: the tenant A managed identity's assertion buys a tenant B token.
#[tokio::test]
async fn client_assertion_credential_exchanges_the_managed_identity_assertion() {
    let app = spawn().await;
    let assertion = ManagedIdentityAssertion {
        client: app.client.clone(),
        endpoint: app.emulator.managed_identity_endpoint(),
        header: app.emulator.managed_identity_header().to_owned(),
    };
    let credential = ClientAssertionCredential::new(
        TENANT_B.to_owned(),
        WRITER.to_owned(),
        assertion,
        Some(ClientAssertionCredentialOptions { client_options: client_options(&app) }),
    )
    .expect("credential");
    let token = credential.get_token(&[GRAPH_SCOPE], None).await.expect("token");
    let claims = claims(token.token.secret());
    assert_eq!(claims["tid"], TENANT_B);
    assert_eq!(claims["appid"], WRITER);
    assert_eq!(claims["roles"], serde_json::json!(["User.ReadWrite.All"]));
}

// [workload-identity-federation] the assertion's iss/sub/aud, and AADSTS700213 / AADSTS70021 when nothing matches.
#[tokio::test]
async fn assertions_must_match_a_federated_credential() {
    let app = spawn().await;
    let header = app.emulator.managed_identity_header().to_owned();
    let response = app.managed_identity(graph_emulator::TOKEN_EXCHANGE_AUDIENCE, &header).await;
    let body: Value = response.json().await.expect("json");
    let assertion = body["access_token"].as_str().expect("assertion").to_owned();
    let c = claims(&assertion);
    assert_eq!(c["iss"], format!("{}{TENANT_A}/v2.0", app.emulator.https_url()));
    assert_eq!(c["sub"], MI_OBJECT_ID);
    assert_eq!(c["aud"], "api://AzureADTokenExchange");

    // Same issuer, other subject.
    app.directory.add_app(
        TENANT_B,
        graph_emulator::AppRegistration {
            client_id: "77777777-0000-4000-8000-000000000007".into(),
            client_secret: None,
            roles: vec![],
            federated_credentials: vec![graph_emulator::FederatedCredential {
                issuer: app.emulator.assertion_issuer(TENANT_A),
                subject: "someone-else".into(),
                audience: graph_emulator::TOKEN_EXCHANGE_AUDIENCE.into(),
            }],
        },
    );
    let exchange = |client_id: &'static str| {
        [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
            ("scope", GRAPH_SCOPE),
        ]
    };
    let (status, error, codes, _) =
        aad_error(app.token_request(TENANT_B, &exchange("77777777-0000-4000-8000-000000000007")).await).await;
    assert_eq!((status, error.as_str(), codes), (401, "invalid_client", vec![700213]));
    // No credential with that issuer at all.
    let (status, error, codes, description) =
        aad_error(app.token_request(TENANT_B, &exchange(WRITER_WITH_SECRET)).await).await;
    assert_eq!((status, error.as_str(), codes), (400, "invalid_request", vec![70021]));
    assert!(description.contains("Assertion Subject"), "{description}");
}

// [throttling] injected token faults are transient AADSTS errors.
#[tokio::test]
async fn token_faults_are_transient_server_errors() {
    let app = spawn_with(graph_emulator::EmulatorOptions {
        faults: graph_emulator::Faults { token_error_rate: 1.0, ..Default::default() },
        ..Default::default()
    })
    .await;
    let response = app
        .token_request(
            TENANT_A,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", READER),
                ("client_secret", READER_SECRET),
                ("scope", GRAPH_SCOPE),
            ],
        )
        .await;
    let (status, _, codes, _) = aad_error(response).await;
    assert!(status == 500 || status == 503, "{status}");
    assert!(codes == vec![50000] || codes == vec![90033], "{codes:?}");
}
