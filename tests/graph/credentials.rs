//! The production credentials against the emulator's token and managed identity endpoints.

use std::sync::Mutex;

use certsync::graph::{GraphClient, GraphError, MembershipScope, TenantCredential, USER_SELECT};
use graph_emulator::{AppRegistration, FederatedCredential, ManagedIdentity, RequestKind, TOKEN_EXCHANGE_AUDIENCE};
use secrecy::SecretString;

use crate::helpers::{READ_WRITE, TestGraph, new_tenant};

/// Managed identity reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` when built. nextest runs one test per process; the
/// lock keeps `cargo test` (threads) correct too.
static ENVIRONMENT: Mutex<()> = Mutex::new(());

fn with_managed_identity_environment<T>(graph: &TestGraph, build: impl FnOnce() -> T) -> T {
    let _guard = ENVIRONMENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // SAFETY: serialised by ENVIRONMENT; no other thread of this test reads the environment meanwhile.
    unsafe {
        std::env::set_var("IDENTITY_ENDPOINT", graph.emulator.managed_identity_endpoint().as_str());
        std::env::set_var("IDENTITY_HEADER", graph.emulator.managed_identity_header());
    }
    build()
}

#[tokio::test]
async fn a_wrong_client_secret_is_a_credential_error_naming_the_tenant() {
    let graph = TestGraph::start().await;
    let (group, _) = graph.group_of_users("g", 1);
    let app = graph.register_app(READ_WRITE);
    let credential = TenantCredential::ClientSecret {
        client_id: app.client_id.clone(),
        secret: SecretString::from("not-the-secret"),
    };
    let client = GraphClient::connect(graph.tenant.clone(), &credential, &graph.cloud(), graph.options()).unwrap();

    let error = client.group_members(&group, MembershipScope::Direct, USER_SELECT).await.unwrap_err();

    let GraphError::Credential { tenant, .. } = &error else { panic!("{error:?}") };
    assert_eq!(tenant, &graph.tenant);
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("could not get a token for tenant {} with client secret: ", graph.tenant)),
        "{text}"
    );
    assert!(text.contains("AADSTS7000215"), "Entra's own code reaches the administrator: {text}");
    assert!(!text.contains("not-the-secret"), "the secret never appears: {text}");
    assert!(graph.graph_requests().is_empty(), "Graph was never called without a token");
}

#[tokio::test]
async fn a_managed_identity_reads_its_own_tenant_through_the_app_service_endpoint() {
    let graph = TestGraph::start().await;
    let (group, _) = graph.group_of_users("a", 2);
    let identity = ManagedIdentity {
        client_id: uuid::Uuid::new_v4().to_string(),
        object_id: uuid::Uuid::new_v4().to_string(),
        roles: vec!["GroupMember.Read.All".to_owned(), "User.Read.All".to_owned()],
    };
    graph.directory().add_managed_identity(graph.tenant.as_str(), identity.clone());
    let credential = TenantCredential::ManagedIdentity { client_id: Some(identity.client_id.clone()) };
    let client = with_managed_identity_environment(&graph, || {
        GraphClient::connect(graph.tenant.clone(), &credential, &graph.cloud(), graph.options()).unwrap()
    });

    let members = client.group_members(&group, MembershipScope::Direct, USER_SELECT).await.unwrap();

    assert_eq!(members.users.len(), 2);
    let requests = graph.directory().requests();
    let identity_requests: Vec<_> = requests.iter().filter(|r| r.kind == RequestKind::ManagedIdentity).collect();
    assert_eq!(identity_requests.len(), 1, "one token, cached");
    assert!(
        requests
            .iter()
            .filter(|r| r.kind == RequestKind::Read)
            .all(|r| r.app_id.as_deref() == Some(&identity.client_id))
    );
}

#[tokio::test]
async fn a_federated_managed_identity_writes_to_tenant_b_without_a_secret() {
    // Tenant A hosts the managed identity; the Tenant B app trusts it through a federated identity credential.
    let graph = TestGraph::start().await;
    let tenant_a = new_tenant(&graph.emulator);
    let identity = ManagedIdentity {
        client_id: uuid::Uuid::new_v4().to_string(),
        object_id: uuid::Uuid::new_v4().to_string(),
        roles: Vec::new(),
    };
    graph.directory().add_managed_identity(tenant_a.as_str(), identity.clone());
    let app_id = uuid::Uuid::new_v4().to_string();
    graph.directory().add_app(
        graph.tenant.as_str(),
        AppRegistration {
            client_id: app_id.clone(),
            client_secret: None,
            roles: READ_WRITE.iter().map(|role| (*role).to_owned()).collect(),
            federated_credentials: vec![FederatedCredential {
                issuer: graph.emulator.assertion_issuer(tenant_a.as_str()),
                subject: identity.object_id.clone(),
                audience: TOKEN_EXCHANGE_AUDIENCE.to_owned(),
            }],
        },
    );
    let user = graph.add_user("b@x.test");
    let credential = TenantCredential::FederatedManagedIdentity {
        client_id: app_id.clone(),
        managed_identity_client_id: Some(identity.client_id.clone()),
    };
    let client = with_managed_identity_environment(&graph, || {
        GraphClient::connect(graph.tenant.clone(), &credential, &graph.cloud(), graph.options()).unwrap()
    });

    let results = client.set_certificate_user_ids(vec![(user.clone(), vec!["X509:<PN>b@x.test".to_owned()])]).await;

    assert!(results[0].1.is_ok(), "{:?}", results[0].1);
    assert_eq!(graph.certificate_user_ids(&user), vec!["X509:<PN>b@x.test"]);
    let requests = graph.directory().requests();
    let token = requests.iter().find(|r| r.kind == RequestKind::Token).expect("a token exchange");
    assert_eq!(token.tenant.as_deref(), Some(graph.tenant.as_str()));
    assert_eq!(token.app_id.as_deref(), Some(app_id.as_str()));
    assert!(requests.iter().any(|r| r.kind == RequestKind::ManagedIdentity));
}
