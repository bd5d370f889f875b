//! The in-memory directory: tenants, their objects and indexes, the request log and the emulator clock.
//!
//! One `RwLock` per tenant; every lookup a Graph request needs is a hash lookup (users by id, UPN, mail, employeeId,
//! sAMAccountName and certificateUserIds value; group members as an ordered `Vec` plus a `HashSet`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::model::{AppRegistration, ManagedIdentity, NewUser, RequestRecord, SubscriptionRecord, UserRecord};
use crate::options::DeltaExpiry;
use crate::throttle::ThrottleState;

/// Most requests kept by the log; older ones are dropped first.
const REQUEST_LOG_CAPACITY: usize = 1_000_000;

/// The type of a directory object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ObjectKind {
    User,
    Device,
    ServicePrincipal,
    Group,
}

impl ObjectKind {
    /// The `@odata.type` Graph gives the object.
    pub(crate) fn odata_type(self) -> &'static str {
        match self {
            ObjectKind::User => "#microsoft.graph.user",
            ObjectKind::Device => "#microsoft.graph.device",
            ObjectKind::ServicePrincipal => "#microsoft.graph.servicePrincipal",
            ObjectKind::Group => "#microsoft.graph.group",
        }
    }
}

/// A device or service principal: only what a member listing shows.
#[derive(Debug, Clone)]
pub(crate) struct OtherObject {
    pub display_name: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct GroupData {
    pub display_name: String,
    pub members: Vec<String>,
    pub member_set: HashSet<String>,
}

/// An app registration and the object id of its service principal in the tenant.
#[derive(Debug, Clone)]
pub(crate) struct AppEntry {
    pub registration: AppRegistration,
    pub service_principal_id: String,
}

/// One membership change, the material of group delta queries.
#[derive(Debug, Clone)]
pub(crate) struct MembershipChange {
    pub seq: u64,
    pub group_id: String,
    pub member_id: String,
    pub member_kind: ObjectKind,
    pub added: bool,
}

#[derive(Debug, Default)]
pub(crate) struct TenantData {
    pub users: BTreeMap<String, UserRecord>,
    pub by_upn: HashMap<String, Vec<String>>,
    pub by_mail: HashMap<String, Vec<String>>,
    pub by_employee_id: HashMap<String, Vec<String>>,
    pub by_sam: HashMap<String, Vec<String>>,
    pub by_certificate_user_id: HashMap<String, Vec<String>>,
    /// Every object id of the tenant and its type.
    pub objects: HashMap<String, ObjectKind>,
    pub others: HashMap<String, OtherObject>,
    pub groups: HashMap<String, GroupData>,
    /// Member id to the groups that directly hold it.
    pub member_of: HashMap<String, HashSet<String>>,
    pub apps: HashMap<String, AppEntry>,
    pub changes: Vec<MembershipChange>,
    pub next_seq: u64,
    pub subscriptions: BTreeMap<String, SubscriptionRecord>,
    /// Certificates (DER, public part only) registered on apps, by client id: their `keyCredentials` of type
    /// `AsymmetricX509Cert`. Kept apart from [`AppEntry`] so [`Directory::add_app`] replacing a registration keeps them.
    pub app_certificates: HashMap<String, Vec<Vec<u8>>>,
    /// Intune Cloud PKI: CAs and the certificates they issued.
    pub pki: crate::pki::PkiData,
}

fn index_add(map: &mut HashMap<String, Vec<String>>, key: &str, id: &str) {
    let ids = map.entry(key.to_owned()).or_default();
    if !ids.iter().any(|x| x == id) {
        ids.push(id.to_owned());
    }
}

fn index_remove(map: &mut HashMap<String, Vec<String>>, key: &str, id: &str) {
    if let Some(ids) = map.get_mut(key) {
        ids.retain(|x| x != id);
        if ids.is_empty() {
            map.remove(key);
        }
    }
}

impl TenantData {
    // Directory string comparisons on these properties are case-insensitive; certificateUserIds values are kept
    // exact. TODO-correctness: Entra's case rule for certificateUserIds uniqueness is not documented.
    fn index_user(&mut self, user: &UserRecord) {
        let id = user.id.as_str();
        index_add(&mut self.by_upn, &user.user_principal_name.to_lowercase(), id);
        if let Some(mail) = &user.mail {
            index_add(&mut self.by_mail, &mail.to_lowercase(), id);
        }
        if let Some(employee_id) = &user.employee_id {
            index_add(&mut self.by_employee_id, &employee_id.to_lowercase(), id);
        }
        if let Some(sam) = &user.on_premises_sam_account_name {
            index_add(&mut self.by_sam, &sam.to_lowercase(), id);
        }
        for value in &user.certificate_user_ids {
            index_add(&mut self.by_certificate_user_id, value, id);
        }
    }

    fn unindex_user(&mut self, user: &UserRecord) {
        let id = user.id.as_str();
        index_remove(&mut self.by_upn, &user.user_principal_name.to_lowercase(), id);
        if let Some(mail) = &user.mail {
            index_remove(&mut self.by_mail, &mail.to_lowercase(), id);
        }
        if let Some(employee_id) = &user.employee_id {
            index_remove(&mut self.by_employee_id, &employee_id.to_lowercase(), id);
        }
        if let Some(sam) = &user.on_premises_sam_account_name {
            index_remove(&mut self.by_sam, &sam.to_lowercase(), id);
        }
        for value in &user.certificate_user_ids {
            index_remove(&mut self.by_certificate_user_id, value, id);
        }
    }

    /// Applies `f` to a user and keeps the indexes right. Returns false when the user does not exist.
    pub(crate) fn edit_user(&mut self, user_id: &str, f: impl FnOnce(&mut UserRecord)) -> bool {
        let Some(mut user) = self.users.remove(user_id) else {
            return false;
        };
        self.unindex_user(&user);
        f(&mut user);
        user.id = user_id.to_owned();
        self.index_user(&user);
        self.users.insert(user_id.to_owned(), user);
        true
    }

    /// Finds a user by object id or user principal name, as `/users/{id | userPrincipalName}` does. [user-get]
    pub(crate) fn find_user(&self, id_or_upn: &str) -> Option<&UserRecord> {
        if let Some(user) = self.users.get(id_or_upn) {
            return Some(user);
        }
        let ids = self.by_upn.get(&id_or_upn.to_lowercase())?;
        ids.first().and_then(|id| self.users.get(id))
    }

    /// Users at most 500 make an "S" tenant and so on. [throttling-limits]
    pub(crate) fn user_count(&self) -> usize {
        self.users.len()
    }

    fn record_change(&mut self, group_id: &str, member_id: &str, kind: ObjectKind, added: bool) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.changes.push(MembershipChange {
            seq,
            group_id: group_id.to_owned(),
            member_id: member_id.to_owned(),
            member_kind: kind,
            added,
        });
    }

    pub(crate) fn add_member(&mut self, group_id: &str, member_id: &str) -> Result<bool, DirectoryError> {
        let kind = *self.objects.get(member_id).ok_or_else(|| DirectoryError::ObjectNotFound(member_id.to_owned()))?;
        let group = self.groups.get_mut(group_id).ok_or_else(|| DirectoryError::GroupNotFound(group_id.to_owned()))?;
        if !group.member_set.insert(member_id.to_owned()) {
            return Ok(false);
        }
        group.members.push(member_id.to_owned());
        self.member_of.entry(member_id.to_owned()).or_default().insert(group_id.to_owned());
        self.record_change(group_id, member_id, kind, true);
        Ok(true)
    }

    pub(crate) fn remove_member(&mut self, group_id: &str, member_id: &str) -> Result<bool, DirectoryError> {
        let group = self.groups.get_mut(group_id).ok_or_else(|| DirectoryError::GroupNotFound(group_id.to_owned()))?;
        if !group.member_set.remove(member_id) {
            return Ok(false);
        }
        group.members.retain(|m| m != member_id);
        if let Some(groups) = self.member_of.get_mut(member_id) {
            groups.remove(group_id);
        }
        let kind = self.objects.get(member_id).copied().unwrap_or(ObjectKind::User);
        self.record_change(group_id, member_id, kind, false);
        Ok(true)
    }
}

/// A tenant: its data behind one lock, and its throttling state behind another.
#[derive(Debug, Default)]
pub(crate) struct Tenant {
    data: RwLock<TenantData>,
    pub throttle: Mutex<ThrottleState>,
    /// Bumped by every [`Tenant::write`]: what was computed from the data at one generation holds until the next.
    generation: AtomicU64,
    /// Sizes of member listings (`@odata.count`), by listing, with the generation they were counted at. A
    /// `$count=true` travels in every nextLink, and recounting a 100,000-member group per page cost about 20 ms.
    counts: Mutex<HashMap<String, (u64, usize)>>,
}

impl Tenant {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, TenantData> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, TenantData> {
        let guard = self.data.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        guard
    }

    /// The count of `listing` as `count` gives it, counted once per generation of the data (called under a read
    /// guard, so the data cannot change in between).
    pub(crate) fn count_once(&self, listing: &str, count: impl FnOnce() -> usize) -> usize {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(counted_at, size)) = counts.get(listing)
            && counted_at == generation
        {
            return size;
        }
        let size = count();
        counts.insert(listing.to_owned(), (generation, size));
        size
    }
}

/// A group whose membership changed through the back door: change notifications may be due.
#[derive(Debug, Clone)]
pub(crate) struct GroupChanged {
    pub tenant_id: String,
    pub group_id: String,
}

/// What the notification worker is asked to do.
#[derive(Debug, Clone)]
pub(crate) enum NotifyEvent {
    Changed(GroupChanged),
    Lifecycle { tenant_id: String, subscription_id: String, event: String },
}

#[derive(Debug)]
struct DirectoryInner {
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    managed_identities: RwLock<Vec<(String, ManagedIdentity)>>,
    requests: Mutex<VecDeque<RequestRecord>>,
    clock_offset_ms: AtomicI64,
    /// Delta tokens issued before this instant (per tenant) are expired.
    delta_watermark: Mutex<HashMap<String, OffsetDateTime>>,
    delta_expiry: Mutex<DeltaExpiry>,
    notifier: Mutex<Option<mpsc::UnboundedSender<NotifyEvent>>>,
}

/// Errors of the back door, for callers that want them instead of a panic (the admin API).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    #[error("tenant '{0}' does not exist")]
    TenantNotFound(String),
    #[error("group '{0}' does not exist")]
    GroupNotFound(String),
    #[error("object '{0}' does not exist")]
    ObjectNotFound(String),
    #[error("user '{0}' does not exist")]
    UserNotFound(String),
    #[error("scenario reference '{0}' is not defined")]
    UnknownReference(String),
    #[error("subscription '{0}' does not exist")]
    SubscriptionNotFound(String),
}

/// A cheap handle (an `Arc`) to the emulator's in-memory state: the back door for seeding and inspection.
///
/// The seeding methods panic when a tenant or group does not exist (a test bug); the `try_` variants return errors.
#[derive(Debug, Clone)]
pub struct Directory {
    inner: Arc<DirectoryInner>,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

impl Directory {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(DirectoryInner {
                tenants: RwLock::new(HashMap::new()),
                managed_identities: RwLock::new(Vec::new()),
                requests: Mutex::new(VecDeque::new()),
                clock_offset_ms: AtomicI64::new(0),
                delta_watermark: Mutex::new(HashMap::new()),
                delta_expiry: Mutex::new(DeltaExpiry::default()),
                notifier: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn set_notifier(&self, sender: mpsc::UnboundedSender<NotifyEvent>) {
        *lock(&self.inner.notifier) = Some(sender);
    }

    fn notify(&self, event: NotifyEvent) {
        if let Some(sender) = lock(&self.inner.notifier).as_ref() {
            // The worker is gone only when the emulator stops; nothing to deliver then.
            let _ = sender.send(event);
        }
    }

    pub(crate) fn tenant(&self, tenant_id: &str) -> Option<Arc<Tenant>> {
        self.inner.tenants.read().unwrap_or_else(|e| e.into_inner()).get(tenant_id).cloned()
    }

    pub(crate) fn try_tenant(&self, tenant_id: &str) -> Result<Arc<Tenant>, DirectoryError> {
        self.tenant(tenant_id).ok_or_else(|| DirectoryError::TenantNotFound(tenant_id.to_owned()))
    }

    fn must_tenant(&self, tenant_id: &str) -> Arc<Tenant> {
        match self.try_tenant(tenant_id) {
            Ok(tenant) => tenant,
            Err(e) => panic!("{e}"),
        }
    }

    /// Creates an empty tenant (no-op when it exists).
    pub fn add_tenant(&self, tenant_id: &str) {
        let mut tenants = self.inner.tenants.write().unwrap_or_else(|e| e.into_inner());
        tenants.entry(tenant_id.to_owned()).or_default();
    }

    pub fn tenant_ids(&self) -> Vec<String> {
        let tenants = self.inner.tenants.read().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = tenants.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Registers an app (and its service principal) in a tenant; replaces one with the same client id.
    pub fn add_app(&self, tenant_id: &str, app: AppRegistration) {
        let tenant = self.must_tenant(tenant_id);
        let mut data = tenant.write();
        let service_principal_id = data
            .apps
            .get(&app.client_id)
            .map(|a| a.service_principal_id.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        data.apps.insert(app.client_id.clone(), AppEntry { registration: app, service_principal_id });
    }

    /// Adds a certificate credential to an app registered with [`Directory::add_app`]: the first `CERTIFICATE` of
    /// `certificate_pem` (other sections, such as a private key, are ignored; only the public certificate is kept).
    /// The token endpoint then accepts client assertions signed with its key. [certificate-credentials]
    ///
    /// Panics when the tenant or the app does not exist, or the PEM holds no parsable certificate (a test bug).
    pub fn add_app_certificate(&self, tenant_id: &str, client_id: &str, certificate_pem: &str) {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let tenant = self.must_tenant(tenant_id);
        let certificate = match CertificateDer::pem_slice_iter(certificate_pem.as_bytes()).next() {
            Some(Ok(certificate)) => certificate,
            Some(Err(error)) => panic!("the certificate PEM is not valid: {error}"),
            None => panic!("the certificate PEM holds no CERTIFICATE section"),
        };
        if let Err(error) = rustls::server::ParsedCertificate::try_from(&certificate) {
            panic!("the certificate is not a valid X.509 certificate: {error}");
        }
        let mut data = tenant.write();
        if !data.apps.contains_key(client_id) {
            panic!("app '{client_id}' is not registered in tenant '{tenant_id}'");
        }
        let certificates = data.app_certificates.entry(client_id.to_owned()).or_default();
        if !certificates.iter().any(|known| known.as_slice() == certificate.as_ref()) {
            certificates.push(certificate.as_ref().to_vec());
        }
    }

    /// Registers a managed identity living in a tenant. The first one added answers requests that name none.
    pub fn add_managed_identity(&self, tenant_id: &str, mi: ManagedIdentity) {
        self.must_tenant(tenant_id);
        let mut mis = self.inner.managed_identities.write().unwrap_or_else(|e| e.into_inner());
        mis.retain(|(_, m)| m.client_id != mi.client_id);
        mis.push((tenant_id.to_owned(), mi));
    }

    /// Finds a managed identity by client id, object id, or the first one when `None`.
    pub(crate) fn find_managed_identity(
        &self,
        client_id: Option<&str>,
        object_id: Option<&str>,
    ) -> Option<(String, ManagedIdentity)> {
        let mis = self.inner.managed_identities.read().unwrap_or_else(|e| e.into_inner());
        mis.iter()
            .find(|(_, mi)| {
                client_id.is_none_or(|c| mi.client_id.eq_ignore_ascii_case(c))
                    && object_id.is_none_or(|o| mi.object_id.eq_ignore_ascii_case(o))
            })
            .cloned()
    }

    /// Adds a user; returns its object id.
    pub fn add_user(&self, tenant_id: &str, user: NewUser) -> String {
        let tenant = self.must_tenant(tenant_id);
        let mut record = user.record;
        if !user.id_given {
            record.id = uuid::Uuid::new_v4().to_string();
        }
        let id = record.id.clone();
        let mut data = tenant.write();
        if let Some(old) = data.users.remove(&id) {
            data.unindex_user(&old);
        }
        data.index_user(&record);
        data.objects.insert(id.clone(), ObjectKind::User);
        data.users.insert(id.clone(), record);
        id
    }

    fn add_other(&self, tenant_id: &str, kind: ObjectKind, display_name: &str) -> String {
        self.add_object_with_id(tenant_id, kind, &uuid::Uuid::new_v4().to_string(), display_name)
    }

    pub(crate) fn add_object_with_id(&self, tenant_id: &str, kind: ObjectKind, id: &str, display_name: &str) -> String {
        let tenant = self.must_tenant(tenant_id);
        let id = id.to_owned();
        let mut data = tenant.write();
        data.objects.insert(id.clone(), kind);
        data.others.insert(id.clone(), OtherObject { display_name: display_name.to_owned() });
        id
    }

    pub fn add_device(&self, tenant_id: &str, display_name: &str) -> String {
        self.add_other(tenant_id, ObjectKind::Device, display_name)
    }

    pub fn add_service_principal(&self, tenant_id: &str, display_name: &str) -> String {
        self.add_other(tenant_id, ObjectKind::ServicePrincipal, display_name)
    }

    pub fn add_group(&self, tenant_id: &str, display_name: &str) -> String {
        self.add_group_with_id(tenant_id, &uuid::Uuid::new_v4().to_string(), display_name)
    }

    /// Adds a group with a given object id.
    pub fn add_group_with_id(&self, tenant_id: &str, group_id: &str, display_name: &str) -> String {
        let tenant = self.must_tenant(tenant_id);
        let mut data = tenant.write();
        data.objects.insert(group_id.to_owned(), ObjectKind::Group);
        data.groups.entry(group_id.to_owned()).or_default().display_name = display_name.to_owned();
        group_id.to_owned()
    }

    /// Adds `member_id` (user, device, service principal or group) to a group.
    ///
    /// # Panics
    /// When the tenant, group or member does not exist.
    pub fn add_member(&self, tenant_id: &str, group_id: &str, member_id: &str) {
        if let Err(e) = self.try_add_member(tenant_id, group_id, member_id) {
            panic!("add_member: {e}");
        }
    }

    /// Adds a member; `Ok(false)` when it already was one.
    pub fn try_add_member(&self, tenant_id: &str, group_id: &str, member_id: &str) -> Result<bool, DirectoryError> {
        let tenant = self.try_tenant(tenant_id)?;
        let added = tenant.write().add_member(group_id, member_id)?;
        if added {
            self.notify_group_changed(tenant_id, group_id);
        }
        Ok(added)
    }

    /// Adds many members at once (seeding large groups); notifications are sent once.
    pub fn add_members<I, S>(&self, tenant_id: &str, group_id: &str, member_ids: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let tenant = self.must_tenant(tenant_id);
        {
            let mut data = tenant.write();
            for member_id in member_ids {
                if let Err(e) = data.add_member(group_id, member_id.as_ref()) {
                    panic!("add_members: {e}");
                }
            }
        }
        self.notify_group_changed(tenant_id, group_id);
    }

    /// # Panics
    /// When the tenant or group does not exist.
    pub fn remove_member(&self, tenant_id: &str, group_id: &str, member_id: &str) {
        if let Err(e) = self.try_remove_member(tenant_id, group_id, member_id) {
            panic!("remove_member: {e}");
        }
    }

    /// Removes a member; `Ok(false)` when it was not one.
    pub fn try_remove_member(&self, tenant_id: &str, group_id: &str, member_id: &str) -> Result<bool, DirectoryError> {
        let tenant = self.try_tenant(tenant_id)?;
        let removed = tenant.write().remove_member(group_id, member_id)?;
        if removed {
            self.notify_group_changed(tenant_id, group_id);
        }
        Ok(removed)
    }

    /// Deletes a user: it leaves every group it was in.
    pub fn delete_user(&self, tenant_id: &str, user_id: &str) {
        let tenant = self.must_tenant(tenant_id);
        let groups: Vec<String> = {
            let mut data = tenant.write();
            let groups: Vec<String> =
                data.member_of.get(user_id).map(|g| g.iter().cloned().collect()).unwrap_or_default();
            for group_id in &groups {
                // The group exists: it is in member_of.
                let _ = data.remove_member(group_id, user_id);
            }
            data.member_of.remove(user_id);
            if let Some(user) = data.users.remove(user_id) {
                data.unindex_user(&user);
            }
            data.objects.remove(user_id);
            groups
        };
        for group_id in groups {
            self.notify_group_changed(tenant_id, &group_id);
        }
    }

    fn notify_group_changed(&self, tenant_id: &str, group_id: &str) {
        self.notify(NotifyEvent::Changed(GroupChanged {
            tenant_id: tenant_id.to_owned(),
            group_id: group_id.to_owned(),
        }));
    }

    /// An administrator's edit: bypasses every Graph check (uniqueness, limits, on-premises mastering).
    ///
    /// # Panics
    /// When the tenant or user does not exist.
    pub fn update_user(&self, tenant_id: &str, user_id: &str, f: impl FnOnce(&mut UserRecord)) {
        let tenant = self.must_tenant(tenant_id);
        if !tenant.write().edit_user(user_id, f) {
            panic!("update_user: user '{user_id}' does not exist in tenant '{tenant_id}'");
        }
    }

    pub fn user(&self, tenant_id: &str, user_id: &str) -> Option<UserRecord> {
        self.tenant(tenant_id)?.read().users.get(user_id).cloned()
    }

    /// Every user of a tenant, sorted by user principal name.
    pub fn users(&self, tenant_id: &str) -> Vec<UserRecord> {
        let Some(tenant) = self.tenant(tenant_id) else {
            return Vec::new();
        };
        let mut users: Vec<UserRecord> = tenant.read().users.values().cloned().collect();
        users.sort_by(|a, b| a.user_principal_name.cmp(&b.user_principal_name));
        users
    }

    /// The direct members of a group, in insertion order.
    pub fn members(&self, tenant_id: &str, group_id: &str) -> Vec<String> {
        self.tenant(tenant_id)
            .and_then(|t| t.read().groups.get(group_id).map(|g| g.members.clone()))
            .unwrap_or_default()
    }

    pub(crate) fn log_request(&self, record: RequestRecord) {
        let mut log = lock(&self.inner.requests);
        if log.len() >= REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(record);
    }

    /// Every Graph, token and managed identity request answered (the last million).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.inner.requests).iter().cloned().collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner.requests).clear();
    }

    pub fn subscriptions(&self, tenant_id: &str) -> Vec<SubscriptionRecord> {
        self.tenant(tenant_id).map(|t| t.read().subscriptions.values().cloned().collect()).unwrap_or_default()
    }

    /// Deletes a subscription behind the app's back (an administrator, or Graph dropping it): no notification is
    /// sent, as for groups Graph sends no `subscriptionRemoved` lifecycle event. Returns whether it existed.
    pub fn delete_subscription(&self, tenant_id: &str, subscription_id: &str) -> bool {
        self.tenant(tenant_id).is_some_and(|t| t.write().subscriptions.remove(subscription_id).is_some())
    }

    /// The emulator clock: real time plus the offset [`Directory::advance_clock`] added. Token lifetimes, delta
    /// tokens and subscription expiry follow it.
    pub fn now(&self) -> OffsetDateTime {
        let offset = self.inner.clock_offset_ms.load(Ordering::Relaxed);
        OffsetDateTime::now_utc() + time::Duration::milliseconds(offset)
    }

    pub fn advance_clock(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.inner.clock_offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Makes every delta token issued so far for the tenant expired.
    pub fn expire_delta_tokens(&self, tenant_id: &str) {
        lock(&self.inner.delta_watermark).insert(tenant_id.to_owned(), self.now());
    }

    pub(crate) fn delta_watermark(&self, tenant_id: &str) -> Option<OffsetDateTime> {
        lock(&self.inner.delta_watermark).get(tenant_id).copied()
    }

    /// Chooses the answer to an expired delta token (default `410 Gone`).
    pub fn set_delta_expiry(&self, expiry: DeltaExpiry) {
        *lock(&self.inner.delta_expiry) = expiry;
    }

    pub(crate) fn delta_expiry(&self) -> DeltaExpiry {
        *lock(&self.inner.delta_expiry)
    }

    /// Sends a lifecycle notification (groups only get `reauthorizationRequired`) for a subscription.
    /// [change-notifications-lifecycle-events]
    pub fn trigger_lifecycle_event(&self, tenant_id: &str, subscription_id: &str, event: &str) {
        self.notify(NotifyEvent::Lifecycle {
            tenant_id: tenant_id.to_owned(),
            subscription_id: subscription_id.to_owned(),
            event: event.to_owned(),
        });
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must not wedge the emulator).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
