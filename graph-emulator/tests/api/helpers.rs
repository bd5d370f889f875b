//! `spawn()`: an emulator with two tenants and their apps, and an HTTPS client that trusts its CA.

use graph_emulator::{AppRegistration, Directory, Emulator, EmulatorOptions, FederatedCredential, ManagedIdentity};
use serde_json::Value;

pub const TENANT_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
pub const TENANT_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
/// Tenant A's reader: members and users.
pub const READER: &str = "11111111-0000-4000-8000-000000000001";
pub const READER_SECRET: &str = "reader-secret";
/// Tenant B's writer: secretless, trusts the managed identity's assertions.
pub const WRITER: &str = "22222222-0000-4000-8000-000000000002";
/// Tenant A's app with only GroupMember.Read.All.
pub const MEMBERS_ONLY: &str = "33333333-0000-4000-8000-000000000003";
pub const MI_CLIENT_ID: &str = "44444444-0000-4000-8000-000000000004";
pub const MI_OBJECT_ID: &str = "55555555-0000-4000-8000-000000000005";
/// Tenant B's writer with a secret (for tests that do not go through the managed identity).
pub const WRITER_WITH_SECRET: &str = "66666666-0000-4000-8000-000000000006";
pub const WRITER_SECRET: &str = "writer-secret";

pub struct TestApp {
    pub emulator: Emulator,
    pub directory: Directory,
    pub client: reqwest::Client,
}

pub async fn spawn() -> TestApp {
    spawn_with(EmulatorOptions::default()).await
}

pub async fn spawn_with(options: EmulatorOptions) -> TestApp {
    let emulator = Emulator::start(options).await.expect("emulator starts");
    let directory = emulator.directory();
    directory.add_tenant(TENANT_A);
    directory.add_tenant(TENANT_B);
    directory.add_app(
        TENANT_A,
        AppRegistration {
            client_id: READER.into(),
            client_secret: Some(READER_SECRET.into()),
            roles: vec!["GroupMember.Read.All".into(), "User.Read.All".into()],
            federated_credentials: vec![],
        },
    );
    directory.add_app(
        TENANT_A,
        AppRegistration {
            client_id: MEMBERS_ONLY.into(),
            client_secret: Some("members-only".into()),
            roles: vec!["GroupMember.Read.All".into()],
            federated_credentials: vec![],
        },
    );
    directory.add_managed_identity(
        TENANT_A,
        ManagedIdentity {
            client_id: MI_CLIENT_ID.into(),
            object_id: MI_OBJECT_ID.into(),
            roles: vec!["GroupMember.Read.All".into(), "User.Read.All".into()],
        },
    );
    directory.add_app(
        TENANT_B,
        AppRegistration {
            client_id: WRITER.into(),
            client_secret: None,
            roles: vec!["User.ReadWrite.All".into()],
            federated_credentials: vec![FederatedCredential {
                issuer: emulator.assertion_issuer(TENANT_A),
                subject: MI_OBJECT_ID.into(),
                audience: graph_emulator::TOKEN_EXCHANGE_AUDIENCE.into(),
            }],
        },
    );
    directory.add_app(
        TENANT_B,
        AppRegistration {
            client_id: WRITER_WITH_SECRET.into(),
            client_secret: Some(WRITER_SECRET.into()),
            roles: vec!["User.ReadWrite.All".into(), "GroupMember.Read.All".into()],
            federated_credentials: vec![],
        },
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes()).expect("CA parses"))
        .build()
        .expect("client builds");
    TestApp { emulator, directory, client }
}

impl TestApp {
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}{tenant}/oauth2/v2.0/token", self.emulator.https_url())
    }

    /// Posts a client-credentials form to the token endpoint.
    pub async fn token_request(&self, tenant: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(self.token_url(tenant)).form(form).send().await.expect("token endpoint answers")
    }

    /// A Graph token for an app with a secret.
    pub async fn token(&self, tenant: &str, client_id: &str, secret: &str) -> String {
        let response = self
            .token_request(
                tenant,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", secret),
                    ("scope", "https://graph.microsoft.com/.default"),
                ],
            )
            .await;
        assert_eq!(response.status(), 200, "token issued");
        let body: Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("access_token").to_owned()
    }

    pub async fn reader_token(&self) -> String {
        self.token(TENANT_A, READER, READER_SECRET).await
    }

    pub async fn writer_token(&self) -> String {
        self.token(TENANT_B, WRITER_WITH_SECRET, WRITER_SECRET).await
    }

    /// An absolute Graph v1.0 URL on the HTTPS listener.
    pub fn graph(&self, path_and_query: &str) -> String {
        format!("{}v1.0/{}", self.emulator.https_url(), path_and_query.trim_start_matches('/'))
    }

    pub async fn get(&self, token: &str, path_and_query: &str) -> reqwest::Response {
        self.client.get(self.graph(path_and_query)).bearer_auth(token).send().await.expect("graph answers")
    }

    /// A GET with `ConsistencyLevel: eventual`.
    pub async fn get_eventual(&self, token: &str, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(self.graph(path_and_query))
            .bearer_auth(token)
            .header("ConsistencyLevel", "eventual")
            .send()
            .await
            .expect("graph answers")
    }

    pub async fn patch_values(&self, token: &str, user_id: &str, values: &[String]) -> reqwest::Response {
        self.client
            .patch(self.graph(&format!("users/{user_id}")))
            .bearer_auth(token)
            .json(&serde_json::json!({"authorizationInfo": {"certificateUserIds": values}}))
            .send()
            .await
            .expect("graph answers")
    }

    pub async fn managed_identity(&self, resource: &str, header: &str) -> reqwest::Response {
        self.client
            .get(self.emulator.managed_identity_endpoint())
            .query(&[("api-version", "2019-08-01"), ("resource", resource), ("client_id", MI_CLIENT_ID)])
            .header("X-IDENTITY-HEADER", header)
            .send()
            .await
            .expect("managed identity endpoint answers")
    }
}

/// The Graph error code of a response body.
pub async fn error_code(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error body is json");
    let error = &body["error"];
    assert!(error["innerError"]["request-id"].is_string(), "innerError.request-id in {body}");
    assert!(error["innerError"]["date"].is_string(), "innerError.date in {body}");
    (
        status,
        error["code"].as_str().unwrap_or_default().to_owned(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Decodes a JWT's claims (no verification).
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("jwt payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    serde_json::from_slice(&bytes).expect("claims json")
}

/// A notification endpoint: echoes `validationToken` as text/plain (200), records every notification POST
/// (its query string and JSON body) and answers 202. `/refuse` fails the handshake.
pub async fn webhook() -> (url::Url, tokio::sync::mpsc::UnboundedReceiver<(String, Value)>) {
    use axum::extract::{RawQuery, State};
    use axum::routing::post;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<(String, Value)>();
    async fn hook(
        State(sender): State<tokio::sync::mpsc::UnboundedSender<(String, Value)>>,
        RawQuery(query): RawQuery,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let query = query.unwrap_or_default();
        let token = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "validationToken");
        if let Some((_, token)) = token {
            return ([("content-type", "text/plain")], token.into_owned()).into_response();
        }
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let _ = sender.send((query, body));
        axum::http::StatusCode::ACCEPTED.into_response()
    }
    async fn refuse() -> axum::http::StatusCode {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    }
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .route("/lifecycle", post(hook))
        .route("/refuse", post(refuse))
        .with_state(sender);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, receiver)
}
