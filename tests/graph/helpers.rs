//! A real in-process Graph emulator per test, tenants and apps seeded through its back door, and clients built with
//! the production credentials (`build_credential`) over HTTPS trusting the emulator's CA.

use std::time::Duration;

use certsync::{
    domain::{GroupId, TenantId, UserId},
    graph::{CloudEndpoints, GraphClient, GraphOptions, TenantCredential},
};
use graph_emulator::{AppRegistration, Emulator, EmulatorOptions, NewUser, RequestKind, RequestRecord};
use secrecy::SecretString;

pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Read and write, as the Tenant B app is normally consented.
pub const READ_WRITE: &[&str] = &["GroupMember.Read.All", "User.ReadWrite.All"];

pub struct TestGraph {
    pub emulator: Emulator,
    pub tenant: TenantId,
}

/// An app registration of a test tenant.
pub struct RegisteredApp {
    pub client_id: String,
    pub secret: String,
}

impl TestGraph {
    pub async fn start() -> TestGraph {
        TestGraph::start_with(EmulatorOptions::default()).await
    }

    pub async fn start_with(options: EmulatorOptions) -> TestGraph {
        let emulator = Emulator::start(options).await.expect("the emulator starts");
        let tenant = new_tenant(&emulator);
        TestGraph { emulator, tenant }
    }

    pub fn directory(&self) -> graph_emulator::Directory {
        self.emulator.directory()
    }

    /// The emulator as a national cloud: Graph and the authority on its HTTPS listener.
    pub fn cloud(&self) -> CloudEndpoints {
        CloudEndpoints {
            graph: self.emulator.https_url(),
            authority: self.emulator.authority_host(),
            graph_scope: GRAPH_SCOPE.to_owned(),
        }
    }

    /// Options that trust the emulator and back off in milliseconds, so retry tests are fast.
    pub fn options(&self) -> GraphOptions {
        GraphOptions {
            extra_ca_pem: Some(self.emulator.ca_pem().to_owned()),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_total_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            ..GraphOptions::default()
        }
    }

    pub fn register_app(&self, roles: &[&str]) -> RegisteredApp {
        let app = RegisteredApp {
            client_id: uuid::Uuid::new_v4().to_string(),
            secret: format!("secret-{}", uuid::Uuid::new_v4()),
        };
        self.directory().add_app(
            self.tenant.as_str(),
            AppRegistration {
                client_id: app.client_id.clone(),
                client_secret: Some(app.secret.clone()),
                roles: roles.iter().map(|role| (*role).to_owned()).collect(),
                federated_credentials: Vec::new(),
            },
        );
        app
    }

    /// A client of the tenant authenticated with a client secret through `build_credential`.
    pub fn secret_client(&self, app: &RegisteredApp, options: GraphOptions) -> GraphClient {
        let credential = TenantCredential::ClientSecret {
            client_id: app.client_id.clone(),
            secret: SecretString::from(app.secret.clone()),
        };
        GraphClient::connect(self.tenant.clone(), &credential, &self.cloud(), options).expect("the client builds")
    }

    /// An app with `roles` and its client, default test options.
    pub fn client_with_roles(&self, roles: &[&str]) -> GraphClient {
        let app = self.register_app(roles);
        self.secret_client(&app, self.options())
    }

    pub fn add_user(&self, upn: &str) -> UserId {
        self.add(NewUser::new(upn))
    }

    pub fn add(&self, user: NewUser) -> UserId {
        let id = self.directory().add_user(self.tenant.as_str(), user);
        UserId::parse(&id).expect("the emulator gives GUIDs")
    }

    /// A group of `users` users named `user{i}@{prefix}.test`, plus the ids of those users.
    pub fn group_of_users(&self, prefix: &str, users: usize) -> (GroupId, Vec<UserId>) {
        let directory = self.directory();
        let group = directory.add_group(self.tenant.as_str(), prefix);
        let ids: Vec<UserId> = (0..users)
            .map(|i| self.add(NewUser::new(format!("user{i}@{prefix}.test")).mail(format!("user{i}@{prefix}.test"))))
            .collect();
        directory.add_members(self.tenant.as_str(), &group, ids.iter().map(UserId::as_str));
        (GroupId::parse(&group).expect("GUID"), ids)
    }

    pub fn certificate_user_ids(&self, user: &UserId) -> Vec<String> {
        self.directory().user(self.tenant.as_str(), user.as_str()).expect("the user exists").certificate_user_ids
    }

    /// Graph requests (not token requests) the emulator answered.
    pub fn graph_requests(&self) -> Vec<RequestRecord> {
        self.directory()
            .requests()
            .into_iter()
            .filter(|r| !matches!(r.kind, RequestKind::Token | RequestKind::ManagedIdentity))
            .collect()
    }
}

pub fn new_tenant(emulator: &Emulator) -> TenantId {
    let tenant = uuid::Uuid::new_v4().to_string();
    emulator.directory().add_tenant(&tenant);
    TenantId::parse(&tenant).expect("GUID")
}
