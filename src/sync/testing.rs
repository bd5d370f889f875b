//! Fixtures for unit tests: users that read like the scenario (`user("alice@a.example").mail(..).build()`).

use crate::domain::UserId;
use crate::graph::DirectoryUser;

pub struct UserBuilder(DirectoryUser);

pub fn user(upn: &str) -> UserBuilder {
    UserBuilder(DirectoryUser {
        id: UserId::parse(&uuid::Uuid::new_v4().to_string()).expect("uuid"),
        user_principal_name: upn.to_owned(),
        on_premises_sync_enabled: None,
        certificate_user_ids: Vec::new(),
        certificate_user_ids_unknown: false,
        attributes: None,
    })
}

impl UserBuilder {
    pub fn id(mut self, id: &UserId) -> Self {
        self.0.id = id.clone();
        self
    }
    pub fn mail(mut self, mail: &str) -> Self {
        self.0.attributes_mut().mail = Some(mail.to_owned());
        self
    }
    pub fn synced(mut self) -> Self {
        self.0.on_premises_sync_enabled = Some(true);
        self
    }
    pub fn values<const N: usize>(mut self, values: [&str; N]) -> Self {
        self.0.certificate_user_ids = values.iter().map(|v| v.to_string()).collect();
        self
    }
    pub fn build(self) -> DirectoryUser {
        self.0
    }
}
