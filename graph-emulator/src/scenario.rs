//! A scenario: tenants, apps, managed identities, users, devices, service principals and groups (members by
//! reference), as JSON. Loaded by the binary (`--scenario`), the admin API and tests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::directory::{Directory, DirectoryError, ObjectKind};
use crate::model::{AppRegistration, ManagedIdentity, NewUser};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub tenants: Vec<TenantScenario>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantScenario {
    pub id: String,
    pub apps: Vec<AppRegistration>,
    pub managed_identities: Vec<ManagedIdentity>,
    pub users: Vec<UserScenario>,
    pub devices: Vec<ObjectScenario>,
    pub service_principals: Vec<ObjectScenario>,
    pub groups: Vec<GroupScenario>,
    /// Many similar users, for benchmarks.
    pub generated_users: Option<GeneratedUsers>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserScenario {
    /// A name other entries use to refer to this user (`groups[].members`); also usable as the id when `id` is absent.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub id: Option<String>,
    pub user_principal_name: String,
    pub display_name: Option<String>,
    pub mail: Option<String>,
    pub employee_id: Option<String>,
    pub on_premises_sam_account_name: Option<String>,
    pub on_premises_sync_enabled: Option<bool>,
    pub certificate_user_ids: Vec<String>,
    pub extensions: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectScenario {
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub id: Option<String>,
    pub display_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupScenario {
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub id: Option<String>,
    pub display_name: String,
    /// References (`ref`) or object ids of users, devices, service principals or groups of the same tenant.
    pub members: Vec<String>,
}

/// `count` users `{prefix}{n}@{domain}` (n from 1), each with `X509:<PN>{upn}` when `with_certificate_user_ids`,
/// members of the groups in `member_of` (references).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneratedUsers {
    pub count: usize,
    pub prefix: String,
    pub domain: String,
    pub member_of: Vec<String>,
    pub with_certificate_user_ids: bool,
}

impl Default for GeneratedUsers {
    fn default() -> Self {
        Self {
            count: 0,
            prefix: "user".to_owned(),
            domain: "example.com".to_owned(),
            member_of: Vec::new(),
            with_certificate_user_ids: false,
        }
    }
}

/// The ids given to a scenario's references, per tenant: `ids[tenant][ref] = id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedScenario {
    pub ids: BTreeMap<String, BTreeMap<String, String>>,
}

impl LoadedScenario {
    /// The id of a reference in a tenant.
    pub fn id(&self, tenant_id: &str, reference: &str) -> Option<&str> {
        self.ids.get(tenant_id)?.get(reference).map(String::as_str)
    }
}

impl Directory {
    /// Loads a scenario on top of what the directory holds.
    pub fn load(&self, scenario: &Scenario) -> Result<LoadedScenario, DirectoryError> {
        let mut loaded = LoadedScenario::default();
        for tenant in &scenario.tenants {
            let refs = self.load_tenant(tenant)?;
            loaded.ids.insert(tenant.id.clone(), refs);
        }
        Ok(loaded)
    }

    fn load_tenant(&self, t: &TenantScenario) -> Result<BTreeMap<String, String>, DirectoryError> {
        self.add_tenant(&t.id);
        for app in &t.apps {
            self.add_app(&t.id, app.clone());
        }
        for mi in &t.managed_identities {
            self.add_managed_identity(&t.id, mi.clone());
        }
        let mut refs: BTreeMap<String, String> = BTreeMap::new();
        for u in &t.users {
            let mut user = NewUser::new(&u.user_principal_name).certificate_user_ids(u.certificate_user_ids.clone());
            if let Some(id) = &u.id {
                user = user.id(id);
            }
            if let Some(v) = &u.display_name {
                user = user.display_name(v);
            }
            if let Some(v) = &u.mail {
                user = user.mail(v);
            }
            if let Some(v) = &u.employee_id {
                user = user.employee_id(v);
            }
            if let Some(v) = &u.on_premises_sam_account_name {
                user = user.sam(v);
            }
            if let Some(v) = u.on_premises_sync_enabled {
                user = user.synced(v);
            }
            for (k, v) in &u.extensions {
                user = user.extension(k, v);
            }
            let id = self.add_user(&t.id, user);
            refs.insert(u.user_principal_name.clone(), id.clone());
            if let Some(r) = &u.reference {
                refs.insert(r.clone(), id);
            }
        }
        for (objects, kind) in [(&t.devices, ObjectKind::Device), (&t.service_principals, ObjectKind::ServicePrincipal)]
        {
            for o in objects {
                let id = o.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                self.add_object_with_id(&t.id, kind, &id, &o.display_name);
                if let Some(r) = &o.reference {
                    refs.insert(r.clone(), id);
                }
            }
        }
        for g in &t.groups {
            let id = g.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            self.add_group_with_id(&t.id, &id, &g.display_name);
            if let Some(r) = &g.reference {
                refs.insert(r.clone(), id);
            }
        }
        let resolve = |member: &str, refs: &BTreeMap<String, String>| -> String {
            refs.get(member).cloned().unwrap_or_else(|| member.to_owned())
        };
        for g in &t.groups {
            let group_id = resolve(g.reference.as_deref().or(g.id.as_deref()).unwrap_or_default(), &refs);
            for member in &g.members {
                let member_id = resolve(member, &refs);
                self.try_add_member(&t.id, &group_id, &member_id).map_err(|e| match e {
                    DirectoryError::ObjectNotFound(_) => DirectoryError::UnknownReference(member.clone()),
                    other => other,
                })?;
            }
        }
        if let Some(generated) = &t.generated_users {
            let groups: Vec<String> = generated
                .member_of
                .iter()
                .map(|r| refs.get(r).cloned().ok_or_else(|| DirectoryError::UnknownReference(r.clone())))
                .collect::<Result<_, _>>()?;
            let mut ids = Vec::with_capacity(generated.count);
            for n in 1..=generated.count {
                let upn = format!("{}{n}@{}", generated.prefix, generated.domain);
                let mut user = NewUser::new(&upn).mail(&upn).employee_id(n.to_string());
                if generated.with_certificate_user_ids {
                    user = user.certificate_user_ids([format!("X509:<PN>{upn}")]);
                }
                ids.push(self.add_user(&t.id, user));
            }
            for group_id in &groups {
                self.add_members(&t.id, group_id, &ids);
            }
        }
        Ok(refs)
    }
}
