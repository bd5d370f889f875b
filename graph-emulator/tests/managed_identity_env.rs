//! The real `ManagedIdentityCredential` (App Service flavour) against the emulator's MSI endpoint.
//! [overview-managed-identity] It reads IDENTITY_ENDPOINT / IDENTITY_HEADER from the process environment, so it
//! lives in its own test binary with a single test.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use graph_emulator::{Emulator, EmulatorOptions, ManagedIdentity};

#[tokio::test]
async fn managed_identity_credential_gets_graph_tokens_and_assertions() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.expect("starts");
    let directory = emulator.directory();
    directory.add_tenant("tenant-a");
    directory.add_managed_identity(
        "tenant-a",
        ManagedIdentity {
            client_id: "mi-client".into(),
            object_id: "mi-object".into(),
            roles: vec!["GroupMember.Read.All".into()],
        },
    );
    // SAFETY: this binary holds one test and sets the variables before any other thread reads the environment.
    unsafe {
        std::env::set_var("IDENTITY_ENDPOINT", emulator.managed_identity_endpoint().as_str());
        std::env::set_var("IDENTITY_HEADER", emulator.managed_identity_header());
    }
    let credential = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
        user_assigned_id: Some(UserAssignedId::ClientId("mi-client".into())),
        client_options: ClientOptions {
            transport: Some(Transport::new(Arc::new(reqwest::Client::new()))),
            ..ClientOptions::default()
        },
    }))
    .expect("credential");

    let graph = credential.get_token(&["https://graph.microsoft.com/.default"], None).await.expect("graph token");
    assert!(graph.token.secret().split('.').count() == 3);

    let assertion =
        credential.get_token(&["api://AzureADTokenExchange/.default"], None).await.expect("federated assertion");
    assert_ne!(assertion.token.secret(), graph.token.secret());
    let requests = directory.requests();
    assert_eq!(requests.iter().filter(|r| r.status == 200).count(), 2, "{requests:?}");
}
