//! Matching Tenant A users to Tenant B users on a key.
//!
//! The runbook matched on the UPN part before `@` with a hashtable, so two users sharing a local part silently
//! overwrote each other. Here a key held by two users on either side is *ambiguous*: both are reported and neither is
//! written. Keys compare case-insensitively after trimming, as Entra compares UPNs and mail addresses.

use std::borrow::Cow;

use serde::Serialize;

use crate::domain::{MatchKey, Side, UserId};
use crate::graph::DirectoryUser;

/// A user as the report shows it: `{"id", "userPrincipalName"}` (docs/run-report.md).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    pub id: UserId,
    pub user_principal_name: String,
}

impl From<&DirectoryUser> for UserRef {
    fn from(user: &DirectoryUser) -> Self {
        Self { id: user.id.clone(), user_principal_name: user.user_principal_name.clone() }
    }
}

/// A key held by more than one user on one side: none of the users with that key (on either side) is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ambiguity {
    pub key: String,
    pub side: Side,
    pub users: Vec<UserRef>,
}

/// The result of matching one pair's members.
#[derive(Debug, Default)]
pub struct Matching<'a> {
    /// (Tenant A user, Tenant B user).
    pub matched: Vec<(&'a DirectoryUser, &'a DirectoryUser)>,
    pub only_in_a: Vec<&'a DirectoryUser>,
    pub only_in_b: Vec<&'a DirectoryUser>,
    pub ambiguous: Vec<Ambiguity>,
    /// Tenant B users whose match is ambiguous: left exactly as they are.
    pub held_targets: Vec<&'a DirectoryUser>,
    /// Users without the key attribute, with the side they are on.
    pub without_key: Vec<(Side, &'a DirectoryUser)>,
}

/// One side's users that have the key, sorted by it; users sharing a key stay in the order given (id order).
/// A sorted list rather than a map of lists: at 100,000 users per side the map was the largest thing a
/// steady-state run held (BENCHMARKS.md).
fn sorted_by_key<'a>(
    key: &MatchKey,
    side: Side,
    users: &'a [DirectoryUser],
    without_key: &mut Vec<(Side, &'a DirectoryUser)>,
) -> Vec<(Cow<'a, str>, &'a DirectoryUser)> {
    let mut keyed = Vec::with_capacity(users.len());
    for user in users {
        match key.borrowed_key_of(user) {
            Some(k) => keyed.push((k, user)),
            None => without_key.push((side, user)),
        }
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed
}

/// The users of a sorted list holding `key`.
fn holding<'s, 'a>(
    keyed: &'s [(Cow<'a, str>, &'a DirectoryUser)],
    key: &str,
) -> &'s [(Cow<'a, str>, &'a DirectoryUser)] {
    let start = keyed.partition_point(|(k, _)| k.as_ref() < key);
    let len = keyed[start..].partition_point(|(k, _)| k.as_ref() == key);
    &keyed[start..start + len]
}

pub fn match_users<'a>(key: &MatchKey, sources: &'a [DirectoryUser], targets: &'a [DirectoryUser]) -> Matching<'a> {
    let mut matching = Matching::default();
    let source_keys = sorted_by_key(key, Side::TenantA, sources, &mut matching.without_key);
    let target_keys = sorted_by_key(key, Side::TenantB, targets, &mut matching.without_key);

    let ambiguity = |side: Side, users: &[(Cow<'_, str>, &DirectoryUser)]| Ambiguity {
        key: users[0].0.clone().into_owned(),
        side,
        users: users.iter().map(|(_, u)| UserRef::from(*u)).collect(),
    };
    for source_users in source_keys.chunk_by(|a, b| a.0 == b.0) {
        let target_users = holding(&target_keys, &source_users[0].0);
        let mut is_ambiguous = false;
        if source_users.len() > 1 {
            matching.ambiguous.push(ambiguity(Side::TenantA, source_users));
            is_ambiguous = true;
        }
        if target_users.len() > 1 {
            matching.ambiguous.push(ambiguity(Side::TenantB, target_users));
            is_ambiguous = true;
        }
        match (is_ambiguous, target_users) {
            (true, _) => matching.held_targets.extend(target_users.iter().map(|(_, u)| *u)),
            (false, [(_, target)]) => matching.matched.push((source_users[0].1, *target)),
            (false, _) => matching.only_in_a.push(source_users[0].1),
        }
    }
    for target_users in target_keys.chunk_by(|a, b| a.0 == b.0) {
        if !holding(&source_keys, &target_users[0].0).is_empty() {
            continue;
        }
        if target_users.len() > 1 {
            matching.ambiguous.push(ambiguity(Side::TenantB, target_users));
            matching.held_targets.extend(target_users.iter().map(|(_, u)| *u));
        } else {
            matching.only_in_b.push(target_users[0].1);
        }
    }
    matching
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testing::user;

    #[test]
    fn matches_on_the_upn_local_part_case_insensitively() {
        let a = [user("Alice@tenant-a.example").build()];
        let b = [user("alice@tenant-b.example").build()];
        let m = match_users(&MatchKey::parse("upn-local-part").unwrap(), &a, &b);
        assert_eq!(m.matched.len(), 1);
        assert!(m.only_in_a.is_empty() && m.only_in_b.is_empty());
    }

    #[test]
    fn keys_fold_case_beyond_ascii_whether_borrowed_or_lowered() {
        let a = [user("ÄRNE@a.example").build(), user("bo@a.example").build(), user("Cy@a.example").build()];
        let b = [user("ärne@b.example").build(), user("BO@b.example").build(), user("cy@b.example").build()];
        let m = match_users(&MatchKey::parse("upn-local-part").unwrap(), &a, &b);
        let pairs: Vec<(&str, &str)> =
            m.matched.iter().map(|(s, t)| (s.user_principal_name.as_str(), t.user_principal_name.as_str())).collect();
        assert_eq!(
            pairs,
            [("bo@a.example", "BO@b.example"), ("Cy@a.example", "cy@b.example"), ("ÄRNE@a.example", "ärne@b.example")]
        );
    }

    #[test]
    fn a_key_shared_by_two_users_on_either_side_is_ambiguous_and_never_matched() {
        let a = [user("jdoe@a.example").build(), user("JDoe@a2.example").build(), user("kim@a.example").build()];
        let b = [user("jdoe@b.example").build(), user("kim@b.example").build(), user("kim@b2.example").build()];
        let m = match_users(&MatchKey::parse("upn-local-part").unwrap(), &a, &b);
        assert!(m.matched.is_empty(), "{:?}", m.matched);
        assert_eq!(m.ambiguous.len(), 2);
        assert_eq!(m.held_targets.len(), 3, "jdoe in B and both kims are held");
        assert!(m.ambiguous.iter().all(|a| a.users.len() == 2));
    }

    #[test]
    fn users_without_the_key_are_listed_not_matched() {
        let a = [user("x@a.example").build()];
        let b = [user("x@b.example").mail("x@contoso.com").build()];
        let m = match_users(&MatchKey::parse("mail").unwrap(), &a, &b);
        assert_eq!(m.without_key.len(), 1);
        assert_eq!(m.only_in_b.len(), 1);
    }
}
