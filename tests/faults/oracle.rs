//! The convergence oracle: what every Tenant B user must hold once a clean run has followed whatever happened.
//!
//! It is written from the README's rules, not from the planner's code, so it can catch the planner too:
//! - a user matched one-to-one (key = UPN local part, trimmed, lower-cased) wants one value per template, rendered
//!   from the Tenant A user; every other user wants nothing;
//! - a user whose key is held by two users on either side is left exactly as it is, and so is a user synchronized
//!   from on-premises;
//! - a value is removed only if the tool owns it (it added it) and it is no longer wanted; everything else stays, in
//!   place and in order; wanted values the user lacks are appended in template order, within the 10-value limit;
//! - a value another user holds (values are unique per tenant) is not added, unless that user is losing it.
//!
//! The model is the directory as the test built it: every change the test makes goes through [`Model`] and the
//! emulator alike. [`Model::converge`] is one complete, successful run; faults and crashes must not change its result.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use graph_emulator::Directory;

/// `MAX_VALUES_PER_USER`: Entra allows at most 10 certificateUserIds values per user [certificate-based
/// authentication, "certificateUserIds"].
pub const MAX_VALUES: usize = 10;

/// `CERTIFICATE_USER_ID_TEMPLATES` of every scenario.
pub const TEMPLATES: &str = "subject-cn;principal-name";

/// The values `subject-cn;principal-name` render from a Tenant A user.
pub fn wanted_values(tenant_a_upn: &str) -> Vec<String> {
    let local_part = tenant_a_upn.split('@').next().unwrap_or_default();
    vec![format!("X509:<S>CN={local_part}"), format!("X509:<PN>{tenant_a_upn}")]
}

fn key_of(upn: &str) -> String {
    upn.split('@').next().unwrap_or_default().trim().to_lowercase()
}

#[derive(Debug, Clone)]
pub struct SourceUser {
    pub id: String,
    pub upn: String,
    pub member: bool,
}

#[derive(Debug, Clone)]
pub struct TargetUser {
    pub id: String,
    pub upn: String,
    pub member: bool,
    pub synced: bool,
    /// What the user holds after the last convergence and the administrator's edits since.
    pub values: Vec<String>,
    /// Values the tool added and still owns (its ledger entry, as it must be).
    pub owned: Vec<String>,
    /// Values an administrator set: they must be on the user at the end, whatever happened.
    pub administrator_values: Vec<String>,
}

/// The directory as the scenario built it.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub source: Vec<SourceUser>,
    pub target: Vec<TargetUser>,
}

impl Model {
    pub fn target(&self, id: &str) -> &TargetUser {
        self.target.iter().find(|u| u.id == id).expect("a Tenant B user of the model")
    }

    pub fn target_mut(&mut self, id: &str) -> &mut TargetUser {
        self.target.iter_mut().find(|u| u.id == id).expect("a Tenant B user of the model")
    }

    pub fn source_mut(&mut self, id: &str) -> &mut SourceUser {
        self.source.iter_mut().find(|u| u.id == id).expect("a Tenant A user of the model")
    }

    /// What the run wants for each Tenant B user, in order: `None` leaves it exactly as it is.
    fn wants(&self) -> Vec<Option<Vec<String>>> {
        let mut sources: BTreeMap<String, Vec<&SourceUser>> = BTreeMap::new();
        for user in self.source.iter().filter(|u| u.member) {
            sources.entry(key_of(&user.upn)).or_default().push(user);
        }
        let mut targets: BTreeMap<String, usize> = BTreeMap::new();
        for user in self.target.iter().filter(|u| u.member) {
            *targets.entry(key_of(&user.upn)).or_default() += 1;
        }

        // Who the run considers, and what each wants. `None`: left exactly as it is.
        let mut wants: Vec<Option<Vec<String>>> = Vec::new();
        for user in &self.target {
            let key = key_of(&user.upn);
            let candidates = sources.get(&key).map(Vec::as_slice).unwrap_or_default();
            let considered = user.member || !user.owned.is_empty();
            let held = user.member && (candidates.len() > 1 || targets.get(&key).copied().unwrap_or(0) > 1);
            wants.push(match () {
                _ if !considered || held || user.synced => None,
                _ if user.member && candidates.len() == 1 => Some(wanted_values(&candidates[0].upn)),
                _ => Some(Vec::new()),
            });
        }
        wants
    }

    /// The Tenant B users matched one-to-one to a Tenant A user: no run may take a value from them.
    pub fn matched(&self) -> BTreeSet<String> {
        let wants = self.wants();
        self.target
            .iter()
            .zip(&wants)
            .filter(|(_, wanted)| wanted.as_ref().is_some_and(|w| !w.is_empty()))
            .map(|(user, _)| user.id.clone())
            .collect()
    }

    /// One complete, successful run: every Tenant B user's final list (also kept as the model's new state).
    pub fn converge(&mut self) -> BTreeMap<String, Vec<String>> {
        let wants = self.wants();

        // Removals first: a value freed here may be given to another user below.
        let mut kept: Vec<Vec<String>> = Vec::new();
        let mut freed: BTreeSet<String> = BTreeSet::new();
        for (user, wanted) in self.target.iter().zip(&wants) {
            let Some(wanted) = wanted else {
                kept.push(user.values.clone());
                continue;
            };
            let (stay, gone): (Vec<String>, Vec<String>) =
                user.values.iter().cloned().partition(|v| !user.owned.contains(v) || wanted.contains(v));
            freed.extend(gone);
            kept.push(stay);
        }
        let held_elsewhere = |me: usize, value: &String| {
            self.target.iter().enumerate().any(|(i, u)| i != me && u.values.contains(value) && !freed.contains(value))
        };
        let mut given: BTreeSet<String> = BTreeSet::new();
        let mut next = Vec::new();
        for (i, (user, wanted)) in self.target.iter().zip(&wants).enumerate() {
            let Some(wanted) = wanted else {
                next.push((user.values.clone(), user.owned.clone()));
                continue;
            };
            let values = &kept[i];
            let mut add: Vec<String> = wanted
                .iter()
                .filter(|v| !values.contains(v) && !held_elsewhere(i, v) && !given.contains(*v))
                .cloned()
                .collect();
            add.truncate(MAX_VALUES.saturating_sub(values.len()));
            given.extend(add.iter().cloned());
            let mut owned: Vec<String> = user.owned.iter().filter(|v| values.contains(v)).cloned().collect();
            for value in &add {
                if !owned.contains(value) {
                    owned.push(value.clone());
                }
            }
            let mut values = values.clone();
            values.extend(add);
            next.push((values, owned));
        }
        for (user, (values, owned)) in self.target.iter_mut().zip(next) {
            user.values = values;
            user.owned = owned;
        }
        self.target.iter().map(|u| (u.id.clone(), u.values.clone())).collect()
    }
}

/// Asserts the emulator's Tenant B equals `expected` exactly (same users, same lists in the same order), and names
/// what kind of damage each difference is: a lost administrator value, a duplicate, a value left for a user that
/// should have none of ours, more than 10 values.
pub fn assert_converged(
    directory: &Directory,
    tenant_b: &str,
    model: &Model,
    expected: &BTreeMap<String, Vec<String>>,
) {
    let actual: BTreeMap<String, Vec<String>> =
        directory.users(tenant_b).into_iter().map(|u| (u.id, u.certificate_user_ids)).collect();
    let mut problems = String::new();
    let ids: BTreeSet<&String> = actual.keys().chain(expected.keys()).collect();
    let mut holders: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
    for (id, values) in &actual {
        for value in values {
            holders.entry(value).or_default().push(id);
        }
    }
    for id in ids {
        let (Some(got), Some(want)) = (actual.get(id), expected.get(id)) else {
            let _ = writeln!(problems, "user {id}: present in only one of emulator ({:?}) / oracle", actual.get(id));
            continue;
        };
        if got == want {
            continue;
        }
        let user = model.target(id);
        let _ = writeln!(problems, "user {} ({id}):\n    expected {want:?}\n    actual   {got:?}", user.upn);
        for value in &user.administrator_values {
            if want.contains(value) && !got.contains(value) {
                let _ = writeln!(problems, "    LOST administrator value {value}");
            }
        }
        let distinct: BTreeSet<&String> = got.iter().collect();
        if distinct.len() != got.len() {
            let _ = writeln!(problems, "    DUPLICATE values");
        }
        for value in got.iter().filter(|v| !want.contains(v)) {
            let _ = writeln!(problems, "    LEFT a value it should not hold: {value}");
        }
        if got.len() > MAX_VALUES {
            let _ = writeln!(problems, "    OVER the {MAX_VALUES}-value limit");
        }
    }
    for (value, ids) in holders.iter().filter(|(_, ids)| ids.len() > 1) {
        let _ = writeln!(problems, "value {value} held by several users: {ids:?}");
    }
    assert!(problems.is_empty(), "Tenant B is not in the expected state:\n{problems}");
}

/// Tenant B and the ledger just before a run: [`assert_nothing_lost`] checks the run against it.
#[derive(Debug, Clone)]
pub struct BeforeRun {
    /// Every Tenant B user's values.
    pub values: BTreeMap<String, Vec<String>>,
    /// The ledger's entries (user id → values the tool owns); `None` when storage could not be read, so the run could
    /// not read it either and may remove nothing at all.
    pub ledger: Option<BTreeMap<String, Vec<String>>>,
    /// The users the model matches one-to-one.
    pub matched: BTreeSet<String>,
}

/// The invariants of **every** run, whatever faults it met (issue 18): no value missing from the ledger is removed,
/// and no user still matched loses a value. A user deleted during the run is not a loss.
pub fn assert_nothing_lost(before: &BeforeRun, after: &BTreeMap<String, Vec<String>>, run: &str) {
    let mut problems = String::new();
    for (id, values) in &before.values {
        let Some(now) = after.get(id) else { continue };
        let owned = before.ledger.as_ref().map(|ledger| ledger.get(id).map(Vec::as_slice).unwrap_or_default());
        for value in values.iter().filter(|v| !now.contains(v)) {
            if before.matched.contains(id) {
                let _ = writeln!(problems, "user {id} is still matched but lost {value}");
            }
            match owned {
                Some(owned) if owned.contains(value) => {}
                Some(_) => {
                    let _ = writeln!(problems, "user {id} lost {value}, which the ledger did not hold before the run");
                }
                None => {
                    let _ = writeln!(problems, "user {id} lost {value} in a run that could not read the ledger");
                }
            }
        }
    }
    assert!(problems.is_empty(), "{run} took values it must not take:\n{problems}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use graph_emulator::NewUser;

    fn target(id: &str, upn: &str, values: &[&str], owned: &[&str]) -> TargetUser {
        TargetUser {
            id: id.into(),
            upn: upn.into(),
            member: true,
            synced: false,
            values: values.iter().map(|v| v.to_string()).collect(),
            owned: owned.iter().map(|v| v.to_string()).collect(),
            administrator_values: vec![],
        }
    }

    fn source(id: &str, upn: &str) -> SourceUser {
        SourceUser { id: id.into(), upn: upn.into(), member: true }
    }

    #[test]
    fn the_oracle_appends_wanted_values_removes_only_owned_ones_and_respects_the_limit() {
        let admin = "X509:<SKI>00aa";
        let full: Vec<String> = (0..9).map(|i| format!("X509:<SKI>{i:02}")).collect();
        let mut model = Model {
            source: vec![source("a1", "u1@a.example"), source("a3", "u3@a.example")],
            target: vec![
                target("b1", "u1@b.example", &[admin], &[]),
                // Left the group: loses what we own, keeps the administrator's value.
                TargetUser {
                    member: false,
                    ..target("b2", "u2@b.example", &[admin, "X509:<S>CN=u2"], &["X509:<S>CN=u2"])
                },
                target("b3", "u3@b.example", &full.iter().map(String::as_str).collect::<Vec<_>>(), &[]),
            ],
        };
        model.target[1].values[0] = "X509:<SKI>00bb".into();
        let expected = model.converge();
        assert_eq!(expected["b1"], [admin, "X509:<S>CN=u1", "X509:<PN>u1@a.example"]);
        assert_eq!(expected["b2"], ["X509:<SKI>00bb"]);
        let mut limited = full.clone();
        limited.push("X509:<S>CN=u3".into());
        assert_eq!(expected["b3"], limited);
        assert_eq!(model.target("b2").owned, Vec::<String>::new());
        assert_eq!(model.target("b1").owned, ["X509:<S>CN=u1", "X509:<PN>u1@a.example"]);
    }

    #[test]
    #[should_panic(expected = "LOST administrator value X509:<SKI>00aa")]
    fn the_assertion_names_a_lost_administrator_value() {
        let directory = Directory::new();
        directory.add_tenant("b");
        let id = directory.add_user("b", NewUser::new("u1@b.example").certificate_user_ids(["X509:<S>CN=u1"]));
        let mut user = target(&id, "u1@b.example", &["X509:<SKI>00aa", "X509:<S>CN=u1"], &["X509:<S>CN=u1"]);
        user.administrator_values = vec!["X509:<SKI>00aa".into()];
        let model = Model { source: vec![], target: vec![user] };
        let expected = BTreeMap::from([(id, vec!["X509:<SKI>00aa".to_owned(), "X509:<S>CN=u1".to_owned()])]);
        assert_converged(&directory, "b", &model, &expected);
    }

    fn before(values: &[(&str, &[&str])], ledger: Option<&[(&str, &[&str])]>, matched: &[&str]) -> BeforeRun {
        let map = |entries: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            entries.iter().map(|(id, v)| (id.to_string(), v.iter().map(|v| v.to_string()).collect())).collect()
        };
        BeforeRun {
            values: map(values),
            ledger: ledger.map(map),
            matched: matched.iter().map(|id| id.to_string()).collect(),
        }
    }

    #[test]
    fn a_run_may_remove_what_the_ledger_held_from_a_user_no_longer_matched() {
        let before = before(&[("b1", &["ours", "admin"]), ("gone", &["x"])], Some(&[("b1", &["ours"])]), &[]);
        let after = BTreeMap::from([("b1".to_owned(), vec!["admin".to_owned()])]);
        assert_nothing_lost(&before, &after, "the run");
    }

    #[test]
    #[should_panic(expected = "user b1 lost admin, which the ledger did not hold before the run")]
    fn a_run_that_removes_a_value_missing_from_the_ledger_is_caught() {
        let before = before(&[("b1", &["ours", "admin"])], Some(&[("b1", &["ours"])]), &[]);
        let after = BTreeMap::from([("b1".to_owned(), vec!["ours".to_owned()])]);
        assert_nothing_lost(&before, &after, "the run");
    }

    #[test]
    #[should_panic(expected = "user b1 is still matched but lost ours")]
    fn a_still_matched_user_losing_even_an_owned_value_is_caught() {
        let before = before(&[("b1", &["ours"])], Some(&[("b1", &["ours"])]), &["b1"]);
        assert_nothing_lost(&before, &BTreeMap::from([("b1".to_owned(), vec![])]), "the run");
    }

    #[test]
    #[should_panic(expected = "in a run that could not read the ledger")]
    fn without_a_readable_ledger_no_removal_is_allowed() {
        let before = before(&[("b1", &["ours"])], None, &[]);
        assert_nothing_lost(&before, &BTreeMap::from([("b1".to_owned(), vec![])]), "the run");
    }

    #[test]
    fn the_oracle_leaves_ambiguous_and_synced_users_alone_and_moves_a_freed_value() {
        let mut model = Model {
            source: vec![
                source("a1", "u1@a.example"),
                source("a1b", "U1@emea.a.example"),
                source("a2", "u2@a.example"),
            ],
            target: vec![
                target("b1", "u1@b.example", &["X509:<S>CN=u1"], &["X509:<S>CN=u1"]),
                TargetUser { synced: true, ..target("s", "s@b.example", &[], &[]) },
                // u2's value moves from a departed user to the new holder of the key.
                TargetUser { member: false, ..target("old", "u2@old.example", &["X509:<S>CN=u2"], &["X509:<S>CN=u2"]) },
                target("new", "u2@b.example", &[], &[]),
            ],
        };
        let expected = model.converge();
        assert_eq!(expected["b1"], ["X509:<S>CN=u1"], "held: not even our own value is removed");
        assert!(expected["s"].is_empty());
        assert!(expected["old"].is_empty());
        assert_eq!(expected["new"], ["X509:<S>CN=u2", "X509:<PN>u2@a.example"]);
    }
}
