//! Planning: a pure function from what was observed to the exact final value list of every user that changes.
//!
//! No I/O, no clock, no async (style: omicron's planner/executor split). Apply only executes what is here, re-merging
//! with a fresher read of each user through the same [`merge`] so a concurrent administrator edit is never lost.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use time::OffsetDateTime;

use super::issued::{IssuedCertificate, IssuedCertificates};
use super::ledger::{Ledger, LedgerEdits, LedgerState};
use super::matching::{Ambiguity, UserRef, match_users};
use crate::domain::{
    CertificateFields, CertificateSource, MAX_VALUES_PER_USER, MatchKey, RemovalThreshold, SerialOrder, Side, Template,
    UserId,
};
use crate::graph::DirectoryUser;

/// One pair's members as read from Graph.
#[derive(Debug, Clone, Default)]
pub struct ObservedPair {
    pub name: String,
    /// Users of the pair's Tenant A groups (deduplicated by id).
    pub source_users: Vec<DirectoryUser>,
    /// Users of the pair's Tenant B groups (deduplicated by id), with their current certificateUserIds.
    pub target_users: Vec<DirectoryUser>,
    pub source_non_user_members: u64,
    pub target_non_user_members: u64,
    /// Where the certificates of this pair's Tenant A users come from (templates reading a certificate need it).
    pub certificate_source: Option<CertificateSource>,
}

/// Everything the planner looks at.
#[derive(Debug, Clone)]
pub struct Observed {
    pub pairs: Vec<ObservedPair>,
    /// Ledger users that are in no Tenant B group any more, re-read so their owned values can be removed.
    pub departed_targets: Vec<DirectoryUser>,
    /// Ledger users Graph no longer knows (deleted): their ledger entries are dropped.
    pub deleted_targets: Vec<UserId>,
    pub ledger: LedgerState,
    /// The certificates of every source a pair reads.
    pub issued: BTreeMap<CertificateSource, IssuedCertificates>,
    /// When this was observed (Graph's clock): a certificate counts when it is valid at this instant.
    pub observed_at: OffsetDateTime,
}

/// What the planner needs from the settings.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub match_key: MatchKey,
    pub templates: Vec<Template>,
    pub removal_threshold: RemovalThreshold,
    pub allow_mass_removal: bool,
    /// Byte order of `{serial}` in templates.
    pub serial_order: SerialOrder,
}

/// One user's change: the values it held, and what to add and remove. The exact list to write is
/// [`UserChange::after`], worked out when needed rather than held: at 100,000 changes (a first sync) a third list per
/// user was 10 MB of the plan and again of the report (BENCHMARKS.md). The report still shows it (`after`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    pub user: UserRef,
    pub before: Vec<String>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// The user's match key when planned, for a change that adds: apply reads it again just before writing, so a
    /// user renamed in between never gets the values of whoever it was matched to (not in the report).
    pub key: Option<String>,
}

impl UserChange {
    /// The list to write: `before` in order without `remove`, then `add` ([`merge`]).
    pub fn after(&self) -> Vec<String> {
        merge(&self.before, &self.add, &self.remove)
    }
}

impl Serialize for UserChange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut change = serializer.serialize_struct("UserChange", 5)?;
        change.serialize_field("user", &self.user)?;
        change.serialize_field("before", &self.before)?;
        change.serialize_field("after", &self.after())?;
        change.serialize_field("add", &self.add)?;
        change.serialize_field("remove", &self.remove)?;
        change.end()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skip {
    pub user: UserRef,
    pub side: Side,
    pub reason: String,
}

/// A value the plan wanted to add that another user already holds (values are unique per tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub user: UserRef,
    pub value: String,
    pub holder_id: String,
    pub holder_user_principal_name: Option<String>,
}

/// Per-pair matching results for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairOutcome {
    pub name: String,
    pub matched: usize,
    pub only_in_a: Vec<UserRef>,
    pub only_in_b: Vec<UserRef>,
    pub ambiguous: Vec<Ambiguity>,
    pub without_key: Vec<Skip>,
    pub non_user_members_a: u64,
    pub non_user_members_b: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldBackRemovals {
    pub users: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub pairs: Vec<PairOutcome>,
    pub changes: Vec<UserChange>,
    /// Matched users whose values are already right.
    pub unchanged: usize,
    /// Their ids (for [`Plan::restricted_to`]).
    #[serde(skip)]
    pub unchanged_users: BTreeSet<UserId>,
    pub skipped: Vec<Skip>,
    pub conflicts: Vec<Conflict>,
    /// Why removals are off for this run (ledger missing or unreadable), if they are.
    pub removals_disabled: Option<String>,
    /// Removals the safety threshold held back.
    pub removals_held_back: Option<HeldBackRemovals>,
    /// The ledger entries of users without a change that differ from the ledger that was read (a write is due even
    /// with no user change). [`Plan::ledger_after`] is the whole ledger as planned.
    #[serde(skip)]
    pub ledger_edits: LedgerEdits,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.ledger_edits.is_empty()
    }

    /// The ledger as it should be once every change succeeds, from `base`, the ledger the plan was made from (empty
    /// when it was missing or unreadable).
    pub fn ledger_after(&self, base: &Ledger) -> Ledger {
        let mut ledger = base.clone();
        self.ledger_edits.apply_to(&mut ledger);
        for change in &self.changes {
            ledger.set(change.user.id.clone(), owned_after(base.owned(&change.user.id), change));
        }
        ledger
    }

    /// The part of this plan that concerns `affected` Tenant B users: their changes, skips, conflicts and ledger
    /// edits, so applying the restricted plan neither writes nor records anything about users outside the scope.
    ///
    /// The pair summaries and the safety-threshold decision are kept as planned over everything observed: an
    /// incremental run holds removals back exactly when a full run would.
    ///
    /// A value moving between users moves whole: when an affected user gains a value another user of the plan
    /// gives up (values are unique per tenant), that user's change is kept too, or the write would be refused.
    pub fn restricted_to(&self, affected: &BTreeSet<UserId>) -> Plan {
        let mut affected = affected.clone();
        loop {
            let gained: BTreeSet<&String> =
                self.changes.iter().filter(|c| affected.contains(&c.user.id)).flat_map(|c| &c.add).collect();
            let givers: Vec<UserId> = self
                .changes
                .iter()
                .filter(|c| !affected.contains(&c.user.id) && c.remove.iter().any(|v| gained.contains(v)))
                .map(|c| c.user.id.clone())
                .collect();
            if givers.is_empty() {
                break;
            }
            affected.extend(givers);
        }
        let affected = &affected;
        let unchanged_users: BTreeSet<UserId> = self.unchanged_users.intersection(affected).cloned().collect();
        Plan {
            pairs: self.pairs.clone(),
            changes: self.changes.iter().filter(|c| affected.contains(&c.user.id)).cloned().collect(),
            unchanged: unchanged_users.len(),
            unchanged_users,
            skipped: self.skipped.iter().filter(|s| affected.contains(&s.user.id)).cloned().collect(),
            conflicts: self.conflicts.iter().filter(|c| affected.contains(&c.user.id)).cloned().collect(),
            removals_disabled: self.removals_disabled.clone(),
            removals_held_back: self.removals_held_back.clone(),
            ledger_edits: self.ledger_edits.retained(|id| affected.contains(id)),
        }
    }
}

/// The final list: `current` in order without `remove`, then each of `add` not already there.
pub fn merge(current: &[String], add: &[String], remove: &[String]) -> Vec<String> {
    let mut after: Vec<String> = current.iter().filter(|v| !remove.contains(v)).cloned().collect();
    for value in add {
        if !after.contains(value) {
            after.push(value.clone());
        }
    }
    after
}

/// A changed user's ledger entry once its change is written: the values of `owned` still on the user after the
/// change, then each value the change adds. The plan's view of the ledger and apply's settling both use it.
pub(super) fn owned_after(owned: &[String], change: &UserChange) -> Vec<String> {
    let after = change.after();
    let mut kept: Vec<String> = owned.iter().filter(|v| after.contains(v)).cloned().collect();
    for value in &change.add {
        if !kept.contains(value) {
            kept.push(value.clone());
        }
    }
    kept
}

/// Connector certificate states name their user by UPN only [intune-deviceconfig-manageddevicecertificatestate]:
/// one issued before its Tenant A user existed belongs to an earlier holder of the UPN. A user whose creation time
/// Graph does not know (null, documented for some older users) cannot be checked, and keeps its certificates.
fn issued_before_user(certificate: &IssuedCertificate, user: &DirectoryUser) -> bool {
    user.created().is_some_and(|created| certificate.not_before < created)
}

/// What one Tenant B user should hold, from every pair it is matched in. One per Tenant B user of the run, so what
/// most users never have (certificates, a hold, a missing attribute) lives in a box allocated only when needed: at
/// 100,000 users the unboxed fields were a fifth of a steady-state run's peak memory (BENCHMARKS.md).
#[derive(Default)]
struct Desire<'a> {
    user: Option<&'a DirectoryUser>,
    /// The Tenant A user it was first matched to, and in which pair: a second, different one makes it ambiguous.
    matched_to: Option<(&'a DirectoryUser, usize)>,
    values: Vec<String>,
    details: Option<Box<DesireDetails<'a>>>,
}

#[derive(Default)]
struct DesireDetails<'a> {
    /// Values from issued certificates, fitted into the 10-value limit newest first (see [`fit_certificate_values`]).
    certificate_values: Vec<CertificateValue<'a>>,
    /// Why this user is left exactly as it is, if it is.
    held: Option<String>,
    missing: Vec<String>,
    /// Certificate values that did not fit, described for the report.
    overflow: Vec<String>,
}

impl<'a> Desire<'a> {
    fn details(&mut self) -> &mut DesireDetails<'a> {
        self.details.get_or_insert_default()
    }

    fn held(&self) -> Option<&String> {
        self.details.as_ref().and_then(|d| d.held.as_ref())
    }

    /// Adds a template value once. The list is sized once for the templates there are: a first push would reserve
    /// room for four, and reserving one more per push would grow it again for each template.
    fn want(&mut self, value: String, templates: usize) {
        if !self.values.contains(&value) {
            if self.values.capacity() == 0 {
                self.values.reserve_exact(templates.max(1));
            }
            self.values.push(value);
        }
    }
}

struct CertificateValue<'a> {
    value: String,
    certificate: &'a IssuedCertificate,
}

const HELD_AMBIGUOUS: &str = "its match is ambiguous (see the pair's ambiguous keys): left unchanged";
/// A write replaces the whole list [user-update]: without knowing the list, any write could drop a value.
const HELD_UNKNOWN_VALUES: &str = "Graph's answer had no authorizationInfo.certificateUserIds list of strings for \
     this user, so what it holds is unknown: left unchanged";

/// Values a user's certificates give that fit beside the values that are not ours and the template values, newest
/// certificate first; the rest is described in `desire.overflow`. Entra keeps at most 10 values per user
/// [concept-certificate-based-authentication-certificateuserids], and the newest certificates are the ones in use.
fn fit_certificate_values(desire: &mut Desire<'_>, owned: &[String]) {
    let Some(user) = desire.user else { return };
    let Some(details) = desire.details.as_mut() else { return };
    let mut candidates = std::mem::take(&mut details.certificate_values);
    candidates.sort_by(|a, b| b.certificate.not_before.cmp(&a.certificate.not_before).then(a.value.cmp(&b.value)));
    let mut seen = BTreeSet::new();
    candidates.retain(|c| !desire.values.contains(&c.value) && seen.insert(c.value.clone()));
    let foreign = user
        .certificate_user_ids
        .iter()
        .filter(|v| !owned.contains(v) && !desire.values.contains(v) && !seen.contains(*v))
        .count();
    let room = MAX_VALUES_PER_USER.saturating_sub(foreign + desire.values.len());
    if candidates.len() > room {
        let left_out = candidates.split_off(room);
        details.overflow = left_out
            .iter()
            .map(|c| {
                let device = c.certificate.device.as_deref().map(|d| format!(", device {d}")).unwrap_or_default();
                let issued = c.certificate.not_before.date();
                format!("{} (issued {issued}{device})", c.value)
            })
            .collect();
    }
    desire.values.extend(candidates.into_iter().map(|c| c.value));
}

pub fn plan(observed: &Observed, settings: &PlanSettings) -> Plan {
    let mut result = Plan::default();
    let empty = Ledger::new();
    let (ledger, removals_allowed) = match &observed.ledger {
        LedgerState::Loaded(ledger) => (ledger, true),
        LedgerState::Missing => {
            result.removals_disabled = Some(
                "no ownership ledger exists yet, so no value is known to be ours: nothing is removed in this run"
                    .to_owned(),
            );
            (&empty, false)
        }
        LedgerState::Unreadable(reason) => {
            result.removals_disabled =
                Some(format!("the ownership ledger cannot be read ({reason}): nothing is removed in this run"));
            (&empty, false)
        }
    };

    // 1. Match every pair; collect each target user's desired values.
    // Built at once from every Tenant B user (full B-tree nodes); the loops below only fill entries in.
    let mut desires: BTreeMap<&UserId, Desire<'_>> = observed
        .pairs
        .iter()
        .flat_map(|pair| &pair.target_users)
        .chain(&observed.departed_targets)
        .map(|user| {
            let mut desire = Desire { user: Some(user), ..Desire::default() };
            if user.certificate_user_ids_unknown {
                desire.details().held = Some(HELD_UNKNOWN_VALUES.to_owned());
            }
            (&user.id, desire)
        })
        .collect();
    for (pair_index, pair) in observed.pairs.iter().enumerate() {
        let matching = match_users(&settings.match_key, &pair.source_users, &pair.target_users);
        let mut outcome = PairOutcome {
            name: pair.name.clone(),
            matched: matching.matched.len(),
            only_in_a: matching.only_in_a.iter().map(|u| UserRef::from(*u)).collect(),
            only_in_b: matching.only_in_b.iter().map(|u| UserRef::from(*u)).collect(),
            ambiguous: matching.ambiguous.clone(),
            without_key: matching
                .without_key
                .iter()
                .map(|(side, u)| Skip {
                    user: UserRef::from(*u),
                    side: *side,
                    reason: format!("has no {} to match on", settings.match_key),
                })
                .collect(),
            non_user_members_a: pair.source_non_user_members,
            non_user_members_b: pair.target_non_user_members,
        };
        for target in &matching.held_targets {
            desires.entry(&target.id).or_default().details().held = Some(HELD_AMBIGUOUS.to_owned());
        }
        // A pair reading certificates whose source was not observed: its users are left alone rather than planned
        // as if they had no certificate (which would remove every certificate value).
        let issued = pair.certificate_source.map(|source| (source, observed.issued.get(&source)));
        for (source, target) in &matching.matched {
            let desire = desires.entry(&target.id).or_default();
            // Two pairs may match one Tenant B user to two different people (alice@contoso in one, alice@fabrikam in
            // the other): binding both would let either sign in as it, so it is ambiguous across the run and held.
            match desire.matched_to {
                None => desire.matched_to = Some((source, pair_index)),
                Some((first, first_pair)) if first.id != source.id => {
                    let first_pair = &observed.pairs[first_pair].name;
                    desire.details().held = Some(format!(
                        "it matches different Tenant A users in different pairs ({} in pair {first_pair}, {} in pair \
                         {}): left unchanged",
                        first.user_principal_name, source.user_principal_name, pair.name
                    ));
                    outcome.ambiguous.push(Ambiguity {
                        key: settings.match_key.key_of(target).unwrap_or_default(),
                        side: Side::TenantA,
                        users: vec![UserRef::from(first), UserRef::from(*source)],
                    });
                    continue;
                }
                Some(_) => {}
            }
            let certificates: Vec<&IssuedCertificate> = match issued {
                Some((kind, Some(issued))) => {
                    let mut usable = Vec::new();
                    for certificate in issued.of(source).filter(|c| c.is_valid_at(observed.observed_at)) {
                        if kind == CertificateSource::IntuneConnector && issued_before_user(certificate, source) {
                            desire.details().missing.push(format!(
                                "a connector certificate for {} was issued before this Tenant A user was created \
                                 (the UPN was reused?): not bound",
                                source.user_principal_name
                            ));
                            continue;
                        }
                        usable.push(certificate);
                    }
                    usable
                }
                Some((kind, None)) => {
                    desire.details().held =
                        Some(format!("the {kind} certificates were not read in this run: left unchanged"));
                    Vec::new()
                }
                None => Vec::new(),
            };
            for template in &settings.templates {
                if template.is_per_certificate() {
                    for certificate in &certificates {
                        let serial = certificate.serial_text(settings.serial_order);
                        let thumbprint = certificate.thumbprint_text();
                        let fields = CertificateFields {
                            issuer: &certificate.issuer_dn,
                            serial: &serial,
                            sha1_public_key: &thumbprint,
                        };
                        match template.render_for_certificate(source, fields) {
                            Ok(value) => desire
                                .details()
                                .certificate_values
                                .push(CertificateValue { value: value.into(), certificate }),
                            Err(reason) => {
                                desire.details().missing.push(format!("{reason} ({})", source.user_principal_name))
                            }
                        }
                    }
                    continue;
                }
                match template.render(source) {
                    Ok(value) => desire.want(value.into(), settings.templates.len()),
                    Err(reason) => {
                        desire.details().missing.push(format!("{} ({})", reason, source.user_principal_name))
                    }
                }
            }
        }
        outcome.only_in_a.sort();
        outcome.only_in_b.sort();
        result.pairs.push(outcome);
    }
    for (id, desire) in desires.iter_mut() {
        fit_certificate_values(desire, ledger.owned(id));
    }

    // 2. Removals first, so the additions below know which values are being freed.
    let held_values = desires.values().filter_map(|d| d.user).map(|u| u.certificate_user_ids.len()).sum();
    let mut holders: HashMap<&str, &DirectoryUser> = HashMap::with_capacity(held_values);
    for desire in desires.values() {
        if let Some(user) = desire.user {
            for value in &user.certificate_user_ids {
                holders.insert(value.as_str(), user);
            }
        }
    }
    let mut removals: BTreeMap<&UserId, Vec<String>> = BTreeMap::new();
    let mut freed: BTreeSet<String> = BTreeSet::new();
    for (id, desire) in &desires {
        let Some(user) = desire.user else { continue };
        if desire.held().is_some() || !removals_allowed || user.on_premises_sync_enabled == Some(true) {
            continue;
        }
        let owned = ledger.owned(id);
        let remove: Vec<String> = user
            .certificate_user_ids
            .iter()
            .filter(|v| owned.contains(v) && !desire.values.contains(v))
            .cloned()
            .collect();
        if !remove.is_empty() {
            freed.extend(remove.iter().cloned());
            removals.insert(*id, remove);
        }
    }

    // 3. The safety threshold, like Entra Connect's accidental-delete prevention.
    if !removals.is_empty() && !settings.allow_mass_removal {
        let losing = removals.len();
        let holding = ledger.users.len().max(1);
        let share = losing as f64 * 100.0 / holding as f64;
        let threshold = settings.removal_threshold;
        let reason = if losing > threshold.max_users {
            Some(format!(
                "{losing} users would lose values, more than the threshold of {} (REMOVAL_THRESHOLD_USERS)",
                threshold.max_users
            ))
        } else if losing >= RemovalThreshold::MIN_USERS_FOR_SHARE && share > threshold.max_percent {
            Some(format!(
                "{losing} of {holding} users holding our values ({share:.0}%) would lose them, more than {}% (REMOVAL_THRESHOLD_PERCENT)",
                threshold.max_percent
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            result.removals_held_back = Some(HeldBackRemovals {
                users: losing,
                reason: format!(
                    "{reason}; removals were not applied. Check the group membership, then run once with --allow-mass-removal (or ALLOW_MASS_REMOVAL=true)"
                ),
            });
            removals.clear();
            freed.clear();
        }
    }

    // 4. Each user's final list. A value wanted by two users of this run goes to the first (in id order) that can
    // take it; the other gets a conflict, not a second write. Only values wanted more than once are tracked: a map of
    // every value given would copy each one at a first sync. The desires are consumed, their values moved into the
    // changes rather than copied.
    let contested = values_wanted_more_than_once(&desires);
    let mut given: HashMap<String, &DirectoryUser> = HashMap::new();
    let mut ledger_edits: Vec<(UserId, Vec<String>)> =
        observed.deleted_targets.iter().map(|deleted| (deleted.clone(), Vec::new())).collect();
    for (id, desire) in desires {
        let Some(user) = desire.user else { continue };
        let user_ref = UserRef::from(user);
        let skip = |reason: String| Skip { user: user_ref.clone(), side: Side::TenantB, reason };
        if let Some(reason) = desire.held() {
            result.skipped.push(skip(reason.clone()));
            continue;
        }
        let (missing, overflow) =
            desire.details.as_ref().map(|d| (&d.missing[..], &d.overflow[..])).unwrap_or_default();
        for missing in missing {
            result.skipped.push(skip(missing.clone()));
        }
        if !overflow.is_empty() {
            result.skipped.push(skip(format!(
                "has more valid certificates than the limit of {MAX_VALUES_PER_USER} certificateUserIds values leaves \
                 room for (values that are not ours and template values count too): the newest are bound; not bound: {}",
                overflow.join(", ")
            )));
        }
        let current = &user.certificate_user_ids;
        let remove = removals.remove(id).unwrap_or_default();
        let wants_values = !desire.values.is_empty();
        let mut add = Vec::new();
        for value in desire.values.into_iter().filter(|v| !current.contains(v)) {
            let holder = match holders.get(value.as_str()) {
                Some(holder) if holder.id != user.id && !freed.contains(&value) => Some(*holder),
                _ => given.get(&value).copied(),
            };
            match holder {
                Some(holder) => result.conflicts.push(Conflict {
                    user: user_ref.clone(),
                    value,
                    holder_id: holder.id.to_string(),
                    holder_user_principal_name: Some(holder.user_principal_name.clone()),
                }),
                None => add.push(value),
            }
        }
        let room = MAX_VALUES_PER_USER.saturating_sub(current.len() - remove.len());
        if add.len() > room {
            let overflow = add.split_off(room);
            result.skipped.push(skip(format!(
                "would exceed the limit of {MAX_VALUES_PER_USER} certificateUserIds values; not added: {}",
                overflow.join(", ")
            )));
        }
        if (!add.is_empty() || !remove.is_empty()) && user.on_premises_sync_enabled == Some(true) {
            result.skipped.push(skip("is synchronized from on-premises: its certificateUserIds can only be set through Microsoft Entra Connect".to_owned()));
            continue;
        }
        if let LedgerState::Unreadable(_) = observed.ledger {
            // Without a readable ledger an addition could not be recorded as ours, and the ledger is never replaced.
            result
                .skipped
                .push(skip("not written: the ownership ledger cannot be read (see removalsDisabled)".to_owned()));
            continue;
        }
        for value in add.iter().filter(|v| contested.contains(v.as_str())) {
            given.insert(value.clone(), user);
        }
        if add.is_empty() && remove.is_empty() {
            // The ledger keeps only owned values still on the user (a claim whose write never happened is pruned).
            let owned = ledger.owned(id);
            if owned.iter().any(|v| !current.contains(v)) {
                ledger_edits.push(((*id).clone(), owned.iter().filter(|v| current.contains(v)).cloned().collect()));
            }
            if wants_values {
                result.unchanged += 1;
                result.unchanged_users.insert((*id).clone());
            }
            continue;
        }
        // One change per user that changes (every user of a first sync): no spare room in its lists.
        add.shrink_to_fit();
        let key = if add.is_empty() { None } else { settings.match_key.key_of(user) };
        result.changes.push(UserChange { user: user_ref, before: current.clone(), add, remove, key });
    }
    // Every user of a first sync changes: the list grew by doubling.
    result.changes.shrink_to_fit();
    result.ledger_edits = LedgerEdits::new(ledger, ledger_edits);
    result
}

/// The values more than one user of the run wants.
fn values_wanted_more_than_once(desires: &BTreeMap<&UserId, Desire<'_>>) -> HashSet<String> {
    let mut first_wanted: HashSet<&str> = HashSet::with_capacity(desires.len());
    let mut contested = HashSet::new();
    for value in desires.values().filter(|d| d.user.is_some()).flat_map(|d| &d.values) {
        if !first_wanted.insert(value.as_str()) {
            contested.insert(value.clone());
        }
    }
    contested
}

#[cfg(test)]
mod tests;
