//! Planner tests: scenarios that read like sentences, then properties over random directories.

use proptest::prelude::*;

use super::*;
use crate::sync::testing::user;

fn settings(templates: &[&str]) -> PlanSettings {
    PlanSettings {
        match_key: MatchKey::parse("upn-local-part").unwrap(),
        templates: templates.iter().map(|t| Template::parse(t).unwrap()).collect(),
        removal_threshold: RemovalThreshold { max_users: 500, max_percent: 20.0 },
        allow_mass_removal: false,
        serial_order: SerialOrder::Reversed,
    }
}

fn observed(sources: Vec<DirectoryUser>, targets: Vec<DirectoryUser>, ledger: LedgerState) -> Observed {
    Observed {
        pairs: vec![ObservedPair {
            name: "pair-1".into(),
            source_users: sources,
            target_users: targets,
            ..Default::default()
        }],
        departed_targets: vec![],
        deleted_targets: vec![],
        ledger,
        issued: BTreeMap::new(),
        observed_at: OffsetDateTime::now_utc(),
    }
}

fn ledger_with(entries: &[(&DirectoryUser, &[&str])]) -> LedgerState {
    let mut ledger = Ledger::new();
    for (user, values) in entries {
        ledger.set(user.id.clone(), values.iter().map(|v| v.to_string()).collect());
    }
    LedgerState::Loaded(ledger)
}

mod certificates {
    //! Values from the certificates Intune issued (issue 7): the planner side.
    use time::macros::datetime;

    use super::*;
    use crate::graph::{CloudCertificationAuthority, LeafCertificateRecord};
    use crate::sync::issued;

    const ISSUER: &str = "DC=com,DC=contoso,CN=Contoso Issuing CA";

    /// Valid until after the observation (2026-11-22).
    const LATER: OffsetDateTime = datetime!(2027-06-01 0:00 UTC);

    /// Active leaf records of one CA: (serial, issued n × 25 days into 2026, valid until).
    fn issued_to(user: &DirectoryUser, certificates: &[(&str, u8, OffsetDateTime)]) -> IssuedCertificates {
        let ca = CloudCertificationAuthority {
            id: "ca".into(),
            display_name: None,
            subject_name: None,
            thumbprint: None,
            certificate_download_url: None,
        };
        let leaves = certificates
            .iter()
            .map(|(serial, month, until)| LeafCertificateRecord {
                id: format!("leaf-{serial}"),
                serial_number: Some((*serial).into()),
                thumbprint: Some(format!("{serial:0>40}")),
                user_id: Some(user.id.to_string()),
                user_principal_name: None,
                device_name: Some(format!("device-{serial}")),
                certificate_status: Some("active".into()),
                validity_start_date_time: Some(
                    datetime!(2026-01-01 0:00 UTC) + time::Duration::days(i64::from(*month) * 25),
                ),
                validity_end_date_time: Some(*until),
            })
            .collect();
        issued::from_cloud_pki(&[(ca, Some(ISSUER.to_owned()))], &BTreeMap::from([("ca".to_owned(), leaves)]))
    }

    fn with_certificates(mut observed: Observed, issued: IssuedCertificates) -> Observed {
        observed.pairs[0].certificate_source = Some(CertificateSource::CloudPki);
        observed.issued.insert(CertificateSource::CloudPki, issued);
        observed.observed_at = datetime!(2026-11-22 12:00 UTC);
        observed
    }

    fn value(serial: &str) -> String {
        // Serial "0n" reversed is itself: one byte.
        format!("X509:<I>{ISSUER}<SR>{serial}")
    }

    #[test]
    fn each_valid_certificate_becomes_an_issuer_and_serial_value() {
        let (alice_a, alice_b) = (user("alice@a.example").build(), user("alice@b.example").build());
        let issued = issued_to(&alice_a, &[("0102", 1, LATER)]);
        let observed = with_certificates(observed(vec![alice_a], vec![alice_b.clone()], LedgerState::Missing), issued);
        let reversed = plan(&observed, &settings(&["issuer-serial", "sha1-public-key"]));
        let expected_thumbprint = "X509:<SHA1-PUKEY>0000000000000000000000000000000000000102";
        assert_eq!(reversed.changes[0].after(), [format!("X509:<I>{ISSUER}<SR>0201"), expected_thumbprint.to_owned()]);
        let mut as_issued = settings(&["issuer-serial"]);
        as_issued.serial_order = SerialOrder::AsIssued;
        assert_eq!(plan(&observed, &as_issued).changes[0].after(), [format!("X509:<I>{ISSUER}<SR>0102")]);
        assert_eq!(reversed.ledger_after(&Ledger::new()).owned(&alice_b.id).len(), 2);
    }

    #[test]
    fn a_connector_certificate_issued_before_its_user_was_created_is_not_bound() {
        // Connector states name their user by UPN only: the first certificate was issued to an earlier holder.
        let mut alice_a = user("alice@a.example").build();
        alice_a
            .attributes_mut()
            .extensions
            .insert(crate::graph::CREATED_DATE_TIME.into(), "2026-03-01T00:00:00Z".into());
        let alice_b = user("alice@b.example").build();
        let issued = issued_to(&alice_a, &[("01", 1, LATER), ("04", 4, LATER)]);
        let mut observed =
            with_certificates(observed(vec![alice_a.clone()], vec![alice_b], LedgerState::Missing), issued);
        let cloud_pki = observed.issued.remove(&CertificateSource::CloudPki).unwrap();
        observed.issued.insert(CertificateSource::IntuneConnector, cloud_pki);
        observed.pairs[0].certificate_source = Some(CertificateSource::IntuneConnector);

        let result = plan(&observed, &settings(&["issuer-serial"]));

        assert_eq!(result.changes[0].after(), [value("04")], "only the certificate issued to this user is bound");
        assert!(
            result.skipped.iter().any(|s| s.reason.contains("issued before this Tenant A user was created")),
            "{:?}",
            result.skipped
        );
        // Without a creation time (Graph's null) there is nothing to compare: both are bound.
        alice_a.attributes_mut().extensions.clear();
        observed.pairs[0].source_users = vec![alice_a];
        assert_eq!(plan(&observed, &settings(&["issuer-serial"])).changes[0].after().len(), 2);
    }

    /// Certificates issued 25 days apart, the first serial the oldest, all valid until [`LATER`].
    fn one_after_another(serials: &[String]) -> Vec<(&str, u8, OffsetDateTime)> {
        serials.iter().enumerate().map(|(i, s)| (s.as_str(), i as u8, LATER)).collect()
    }

    #[test]
    fn twelve_certificates_bind_the_ten_newest_and_report_the_two_oldest() {
        let (alice_a, alice_b) = (user("alice@a.example").build(), user("alice@b.example").build());
        let serials: Vec<String> = (1..=12).map(|n| format!("{n:02x}")).collect();
        let issued = issued_to(&alice_a, &one_after_another(&serials));
        let observed = with_certificates(observed(vec![alice_a], vec![alice_b], LedgerState::Missing), issued);
        let plan = plan(&observed, &settings(&["issuer-serial"]));
        let after = plan.changes[0].after();
        assert_eq!(after.len(), 10);
        assert!(!after.contains(&value("01")) && !after.contains(&value("02")), "{after:?}");
        assert!(after.contains(&value("0c")));
        let skip = plan.skipped.iter().find(|s| s.reason.contains("not bound")).expect("the overflow is reported");
        assert!(skip.reason.contains(&value("01")) && skip.reason.contains(&value("02")), "{}", skip.reason);
        assert!(skip.reason.contains("device-01"), "{}", skip.reason);
    }

    #[test]
    fn a_newer_certificate_replaces_the_oldest_of_ours_when_the_user_is_full() {
        let (alice_a, alice_b) = (user("alice@a.example").build(), user("alice@b.example").build());
        let serials: Vec<String> = (1..=11).map(|n| format!("{n:02x}")).collect();
        let first_ten: Vec<String> = serials[..10].iter().map(|s| value(s)).collect();
        let alice_b = DirectoryUser { certificate_user_ids: first_ten.clone(), ..alice_b };
        let refs: Vec<&str> = first_ten.iter().map(String::as_str).collect();
        let ledger = ledger_with(&[(&alice_b, &refs)]);
        let issued = issued_to(&alice_a, &one_after_another(&serials));
        let observed = with_certificates(observed(vec![alice_a], vec![alice_b], ledger), issued);
        let plan = plan(&observed, &settings(&["issuer-serial"]));
        assert_eq!(plan.changes[0].remove, [value("01")]);
        assert_eq!(plan.changes[0].add, [value("0b")]);
    }

    #[test]
    fn revoked_and_expired_certificates_lose_our_value_but_an_administrators_stays() {
        let (alice_a, alice_b) = (user("alice@a.example").build(), user("alice@b.example").build());
        let admins = format!("X509:<I>{ISSUER}<SR>ff00");
        let alice_b = DirectoryUser { certificate_user_ids: vec![value("01"), value("02"), admins.clone()], ..alice_b };
        let ledger = ledger_with(&[(&alice_b, &[value("01").as_str(), value("02").as_str()])]);
        // 01 was revoked (no longer listed as active); 02 expired before now; 03 is new.
        let issued = issued_to(&alice_a, &[("03", 10, LATER), ("02", 1, datetime!(2026-11-01 0:00 UTC))]);
        let observed = with_certificates(observed(vec![alice_a], vec![alice_b], ledger), issued);
        let plan = plan(&observed, &settings(&["issuer-serial"]));
        let change = &plan.changes[0];
        assert_eq!(change.remove, [value("01"), value("02")]);
        assert_eq!(change.after(), [admins, value("03")]);
    }

    #[test]
    fn mixed_mode_keeps_the_low_affinity_value_and_fills_the_rest_with_the_newest_certificates() {
        let (bob_a, bob_b) = (user("bob@a.example").build(), user("bob@b.example").values(["X509:<PN>own@b"]).build());
        let serials: Vec<String> = (1..=12).map(|n| format!("{n:02x}")).collect();
        let issued = issued_to(&bob_a, &one_after_another(&serials));
        let observed = with_certificates(observed(vec![bob_a], vec![bob_b], LedgerState::Missing), issued);
        let plan = plan(&observed, &settings(&["subject-cn", "issuer-serial"]));
        let after = plan.changes[0].after();
        assert_eq!(after.len(), 10);
        assert_eq!(after[0], "X509:<PN>own@b", "the administrator's value stays first");
        assert!(after.contains(&"X509:<S>CN=bob".to_owned()));
        assert!(after.contains(&value("0c")) && !after.contains(&value("04")), "{after:?}");
    }

    #[test]
    fn a_pair_whose_certificates_were_not_read_leaves_its_users_alone() {
        let (alice_a, alice_b) = (user("alice@a.example").build(), user("alice@b.example").build());
        let alice_b = DirectoryUser { certificate_user_ids: vec![value("01")], ..alice_b };
        let ledger = ledger_with(&[(&alice_b, &[value("01").as_str()])]);
        let mut observed = observed(vec![alice_a], vec![alice_b], ledger);
        observed.pairs[0].certificate_source = Some(CertificateSource::CloudPki);
        let plan = plan(&observed, &settings(&["issuer-serial"]));
        assert!(plan.changes.is_empty());
        assert!(plan.skipped[0].reason.contains("were not read"), "{:?}", plan.skipped);
    }
}

#[test]
fn a_matched_user_gets_the_value_and_it_is_recorded_as_ours() {
    let alice_a = user("alice@a.example").build();
    let alice_b = user("alice@b.example").build();
    let plan = plan(&observed(vec![alice_a], vec![alice_b.clone()], LedgerState::Missing), &settings(&["subject-cn"]));
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(plan.changes[0].after(), ["X509:<S>CN=alice"]);
    assert_eq!(plan.ledger_after(&Ledger::new()).owned(&alice_b.id), ["X509:<S>CN=alice"]);
}

#[test]
fn an_administrators_value_is_kept_in_place_and_in_order() {
    let bob_a = user("bob@a.example").build();
    let bob_b = user("bob@b.example").values(["X509:<PN>bob@partner.example", "X509:<S>CN=old"]).build();
    let ledger = ledger_with(&[(&bob_b, &["X509:<S>CN=old"])]);
    let plan = plan(&observed(vec![bob_a], vec![bob_b], ledger), &settings(&["subject-cn"]));
    let change = &plan.changes[0];
    assert_eq!(change.remove, ["X509:<S>CN=old"], "only our stale value goes");
    assert_eq!(change.after(), ["X509:<PN>bob@partner.example", "X509:<S>CN=bob"]);
}

#[test]
fn a_user_who_left_the_group_loses_only_our_values() {
    let carol_b = user("carol@b.example").values(["X509:<S>CN=carol", "X509:<PN>keep@me"]).build();
    let ledger = ledger_with(&[(&carol_b, &["X509:<S>CN=carol"])]);
    let original = ledger.ledger().unwrap().clone();
    let mut observed = observed(vec![], vec![], ledger);
    observed.departed_targets.push(carol_b.clone());
    let plan = plan(&observed, &settings(&["subject-cn"]));
    assert_eq!(plan.changes[0].after(), ["X509:<PN>keep@me"]);
    assert!(plan.ledger_after(&original).owned(&carol_b.id).is_empty());
}

#[test]
fn without_a_ledger_nothing_is_removed_and_the_plan_says_why() {
    let dave_b = user("dave@b.example").values(["X509:<S>CN=dave"]).build();
    let mut observed = observed(vec![], vec![], LedgerState::Missing);
    observed.departed_targets.push(dave_b);
    let plan = plan(&observed, &settings(&["subject-cn"]));
    assert!(plan.changes.is_empty());
    assert!(plan.removals_disabled.as_deref().unwrap().contains("no ownership ledger"));
}

#[test]
fn an_unreadable_ledger_stops_every_write() {
    let erin_a = user("erin@a.example").build();
    let erin_b = user("erin@b.example").build();
    let plan = plan(
        &observed(vec![erin_a], vec![erin_b], LedgerState::Unreadable("bad JSON".into())),
        &settings(&["subject-cn"]),
    );
    assert!(plan.changes.is_empty());
    assert!(plan.skipped.iter().any(|s| s.reason.contains("ledger cannot be read")));
    assert!(plan.is_empty());
}

#[test]
fn a_synced_user_is_skipped_with_the_reason() {
    let frank_a = user("frank@a.example").build();
    let frank_b = user("frank@b.example").synced().build();
    let plan = plan(&observed(vec![frank_a], vec![frank_b], LedgerState::Missing), &settings(&["subject-cn"]));
    assert!(plan.changes.is_empty());
    assert!(plan.skipped[0].reason.contains("Microsoft Entra Connect"));
}

#[test]
fn a_value_held_by_another_user_is_a_conflict_naming_the_holder() {
    let gina_a = user("gina@a.example").build();
    let gina_b = user("gina@b.example").build();
    let other = user("someone@b.example").values(["X509:<S>CN=gina"]).build();
    let plan =
        plan(&observed(vec![gina_a], vec![gina_b, other.clone()], LedgerState::Missing), &settings(&["subject-cn"]));
    assert!(plan.changes.is_empty());
    assert_eq!(plan.conflicts[0].holder_id, other.id.to_string());
}

#[test]
fn a_value_two_users_of_the_run_want_is_written_once_and_the_other_is_a_conflict() {
    let (kim_a, lee_a) = (
        user("kim@a.example").mail("desk@contoso.com").build(),
        user("lee@a.example").mail("desk@contoso.com").build(),
    );
    let (kim_b, lee_b) = (user("kim@b.example").build(), user("lee@b.example").build());
    let both = observed(vec![kim_a, lee_a], vec![kim_b.clone(), lee_b.clone()], LedgerState::Missing);
    let plan = plan(&both, &settings(&["rfc822"]));
    assert_eq!(plan.changes.len(), 1, "{:?}", plan.changes);
    let first = plan.changes[0].user.id.clone();
    assert_eq!(first, kim_b.id.min(lee_b.id.clone()), "the first user in id order gets it");
    assert_eq!(plan.conflicts.len(), 1);
    assert_eq!(plan.conflicts[0].value, "X509:<RFC822>desk@contoso.com");
    assert_eq!(plan.conflicts[0].holder_id, first.to_string(), "the conflict names the user who got it");
}

#[test]
fn a_contested_value_the_first_user_cannot_take_goes_to_the_next() {
    let (kim_a, lee_a) = (
        user("kim@a.example").mail("desk@contoso.com").build(),
        user("lee@a.example").mail("desk@contoso.com").build(),
    );
    let (mut kim_b, mut lee_b) = (user("kim@b.example").build(), user("lee@b.example").build());
    // Whoever comes first in id order is synchronized from on-premises, so it cannot be written.
    let first = if kim_b.id < lee_b.id { &mut kim_b } else { &mut lee_b };
    first.on_premises_sync_enabled = Some(true);
    let plan = plan(&observed(vec![kim_a, lee_a], vec![kim_b, lee_b], LedgerState::Missing), &settings(&["rfc822"]));
    assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(plan.changes[0].add, ["X509:<RFC822>desk@contoso.com"]);
}

#[test]
fn a_value_moving_from_one_user_to_another_is_not_a_conflict() {
    // Hank's key moved from one Tenant B account to another: the old one loses our value, the new one gets it.
    let hank_a = user("hank@a.example").build();
    let old = user("hank.old@b.example").values(["X509:<S>CN=hank"]).build();
    let new = user("hank@b.example").build();
    let mut observed = observed(vec![hank_a], vec![new.clone()], ledger_with(&[(&old, &["X509:<S>CN=hank"])]));
    observed.departed_targets.push(old);
    let plan = plan(&observed, &settings(&["subject-cn"]));
    assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
    assert_eq!(plan.changes.len(), 2);
}

#[test]
fn the_ten_value_limit_is_never_exceeded_and_the_overflow_is_reported() {
    let ivy_a = user("ivy@a.example").mail("ivy@contoso.com").build();
    let nine: Vec<String> = (0..9).map(|i| format!("X509:<PN>admin{i}@x")).collect();
    let mut ivy_b = user("ivy@b.example").build();
    ivy_b.certificate_user_ids = nine;
    let plan = plan(&observed(vec![ivy_a], vec![ivy_b], LedgerState::Missing), &settings(&["subject-cn", "rfc822"]));
    assert_eq!(plan.changes[0].after().len(), 10);
    assert!(
        plan.skipped
            .iter()
            .any(|s| s.reason.contains("limit of 10") && s.reason.contains("X509:<RFC822>ivy@contoso.com"))
    );
}

#[test]
fn mass_removals_are_held_back_above_the_threshold_unless_allowed() {
    let targets: Vec<DirectoryUser> =
        (0..12).map(|i| user(&format!("u{i}@b.example")).values([&*format!("X509:<S>CN=u{i}")]).build()).collect();
    let entries: Vec<(&DirectoryUser, Vec<&str>)> =
        targets.iter().map(|u| (u, vec![u.certificate_user_ids[0].as_str()])).collect();
    let entries: Vec<(&DirectoryUser, &[&str])> = entries.iter().map(|(u, v)| (*u, v.as_slice())).collect();
    // Everyone left the Tenant A group: 12 of 12 users would lose values.
    let observed = observed(vec![], targets.clone(), ledger_with(&entries));
    let held = plan(&observed, &settings(&["subject-cn"]));
    assert!(held.changes.is_empty());
    assert_eq!(held.removals_held_back.as_ref().unwrap().users, 12);
    let mut allowed = settings(&["subject-cn"]);
    allowed.allow_mass_removal = true;
    assert_eq!(plan(&observed, &allowed).changes.len(), 12);
}

#[test]
fn an_ambiguous_local_part_is_never_written() {
    let a1 = user("jdoe@a.example").build();
    let a2 = user("jdoe@a-sub.example").build();
    let b = user("jdoe@b.example").build();
    let plan = plan(&observed(vec![a1, a2], vec![b], LedgerState::Missing), &settings(&["subject-cn"]));
    assert!(plan.changes.is_empty());
    assert_eq!(plan.pairs[0].ambiguous.len(), 1);
}

#[test]
fn a_tenant_b_user_matched_to_two_people_in_two_pairs_is_held_and_both_are_named() {
    // Issue 18: alice@contoso (pair A1→B1) and alice@fabrikam (pair A2→B2) are two people; alice@b is in both B groups.
    let contoso = user("alice@contoso.example").build();
    let fabrikam = user("alice@fabrikam.example").build();
    let alice_b = user("alice@b.example").values(["X509:<PN>admin-set@b.example"]).build();
    let mut observed = observed(vec![contoso.clone()], vec![alice_b.clone()], LedgerState::Missing);
    observed.pairs.push(ObservedPair {
        name: "pair-2".into(),
        source_users: vec![fabrikam.clone()],
        target_users: vec![alice_b.clone()],
        ..Default::default()
    });
    let templates = settings(&["subject-cn", "principal-name"]);
    let held_plan = plan(&observed, &templates);
    assert!(held_plan.changes.is_empty(), "no value of either person is written: {:?}", held_plan.changes);
    let held: Vec<&Skip> = held_plan.skipped.iter().filter(|s| s.user.id == alice_b.id).collect();
    assert_eq!(held.len(), 1, "{:?}", held_plan.skipped);
    assert!(held[0].reason.contains("alice@contoso.example") && held[0].reason.contains("alice@fabrikam.example"));
    let ambiguous: Vec<&Ambiguity> = held_plan.pairs.iter().flat_map(|p| &p.ambiguous).collect();
    assert_eq!(ambiguous.len(), 1, "the report counts it as ambiguous");
    assert_eq!(
        ambiguous[0].users.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        [contoso.id.clone(), fabrikam.id.clone()]
    );

    // The same Tenant A user in both pairs is one person: matched once, written once.
    observed.pairs[1].source_users = vec![contoso.clone()];
    let one_person = plan(&observed, &templates);
    assert_eq!(one_person.changes.len(), 1);
    assert!(one_person.pairs.iter().all(|p| p.ambiguous.is_empty()));
}

// ---- restriction to the users a change notification concerns ----

#[test]
fn a_restricted_plan_keeps_only_the_affected_users_changes_skips_and_conflicts() {
    let (alice_a, bob_a, gina_a) =
        (user("alice@a.example").build(), user("bob@a.example").build(), user("gina@a.example").build());
    let alice_b = user("alice@b.example").build();
    let bob_b = user("bob@b.example").build();
    let frank_b = user("frank@b.example").synced().build();
    let frank_a = user("frank@a.example").build();
    let gina_b = user("gina@b.example").build();
    let holder = user("holder@b.example").values(["X509:<S>CN=gina"]).build();
    let full = plan(
        &observed(
            vec![alice_a, bob_a, frank_a, gina_a],
            vec![alice_b.clone(), bob_b.clone(), frank_b.clone(), gina_b.clone(), holder],
            LedgerState::Missing,
        ),
        &settings(&["subject-cn"]),
    );
    assert_eq!((full.changes.len(), full.skipped.len(), full.conflicts.len()), (2, 1, 1));

    let only_alice = full.restricted_to(&BTreeSet::from([alice_b.id.clone()]));
    assert_eq!(only_alice.changes.iter().map(|c| &c.user.id).collect::<Vec<_>>(), [&alice_b.id]);
    assert!(only_alice.skipped.is_empty() && only_alice.conflicts.is_empty());
    let recorded = only_alice.ledger_after(&Ledger::new());
    assert_eq!(recorded.users.keys().collect::<Vec<_>>(), [&alice_b.id], "bob's claim is not recorded");

    let frank_and_gina = full.restricted_to(&BTreeSet::from([frank_b.id.clone(), gina_b.id.clone()]));
    assert!(frank_and_gina.changes.is_empty());
    assert_eq!(frank_and_gina.skipped[0].user.id, frank_b.id);
    assert_eq!(frank_and_gina.conflicts[0].user.id, gina_b.id);
    assert!(frank_and_gina.is_empty(), "nothing to write or record for them");
    assert_eq!(frank_and_gina.pairs, full.pairs, "the pair summary is what was observed");
}

#[test]
fn a_restricted_plan_puts_every_other_users_ledger_entry_back_as_it_was() {
    // The full plan would prune Bob's stale claim and drop a deleted user's entry; neither is in scope.
    let alice_a = user("alice@a.example").build();
    let alice_b = user("alice@b.example").build();
    let bob_b = user("bob@b.example").values(["X509:<S>CN=bob"]).build();
    let deleted = user("deleted@b.example").build();
    let original = {
        let mut l = Ledger::new();
        l.set(bob_b.id.clone(), vec!["X509:<S>CN=bob".into(), "X509:<S>CN=stale".into()]);
        l.set(deleted.id.clone(), vec!["X509:<S>CN=deleted".into()]);
        l
    };
    let mut observed =
        observed(vec![alice_a], vec![alice_b.clone(), bob_b.clone()], LedgerState::Loaded(original.clone()));
    observed.deleted_targets.push(deleted.id.clone());
    let full = plan(&observed, &settings(&["subject-cn"]));
    assert_ne!(full.ledger_after(&original).owned(&bob_b.id), original.owned(&bob_b.id), "the full plan prunes bob");
    assert!(full.ledger_after(&original).owned(&deleted.id).is_empty(), "and drops the deleted user");

    let restricted = full.restricted_to(&BTreeSet::from([alice_b.id.clone()]));
    let after = restricted.ledger_after(&original);
    assert_eq!(after.owned(&bob_b.id), original.owned(&bob_b.id));
    assert_eq!(after.owned(&deleted.id), original.owned(&deleted.id));
    assert_eq!(after.owned(&alice_b.id), ["X509:<S>CN=alice"]);
    assert_eq!(restricted.changes.len(), 1);
    // Bob has the removal, not Alice: Bob holds X509:<S>CN=bob without an A user, so the full plan removes it.
    assert!(full.changes.iter().any(|c| c.user.id == bob_b.id));
    assert!(restricted.changes.iter().all(|c| c.user.id != bob_b.id));
}

#[test]
fn a_value_moving_to_an_affected_user_is_taken_from_its_old_holder_in_the_same_run() {
    let hank_a = user("hank@a.example").build();
    let old = user("hank.old@b.example").values(["X509:<S>CN=hank"]).build();
    let new = user("hank@b.example").build();
    let ledger = ledger_with(&[(&old, &["X509:<S>CN=hank"])]);
    let mut observed = observed(vec![hank_a], vec![new.clone()], ledger);
    observed.departed_targets.push(old.clone());
    let full = plan(&observed, &settings(&["subject-cn"]));
    let restricted = full.restricted_to(&BTreeSet::from([new.id.clone()]));
    let users: BTreeSet<&UserId> = restricted.changes.iter().map(|c| &c.user.id).collect();
    assert_eq!(users, BTreeSet::from([&old.id, &new.id]));
}

#[test]
fn restricting_to_every_user_changes_nothing() {
    let alice_a = user("alice@a.example").build();
    let alice_b = user("alice@b.example").build();
    let bob_b = user("bob@b.example").values(["X509:<S>CN=bob"]).build();
    let original = {
        let mut l = Ledger::new();
        l.set(bob_b.id.clone(), vec!["X509:<S>CN=bob".into()]);
        l
    };
    let full = plan(
        &observed(vec![alice_a], vec![alice_b.clone(), bob_b.clone()], LedgerState::Loaded(original.clone())),
        &settings(&["subject-cn"]),
    );
    let everyone = BTreeSet::from([alice_b.id.clone(), bob_b.id.clone()]);
    assert_eq!(full.restricted_to(&everyone), full);
}

// ---- properties ----

const VALUES: &[&str] = &[
    "X509:<S>CN=u0",
    "X509:<S>CN=u1",
    "X509:<S>CN=u2",
    "X509:<PN>a@x",
    "X509:<PN>b@x",
    "X509:<PN>c@x",
    "X509:<RFC822>m@x",
];

/// A Tenant A user of the generated directories: `u{i}@a.example`, or with `other_domain` `u{i}@a2.example`, a
/// different person with the same local part (the same key). Ids are fixed, so one person can be in both pairs.
fn source_user(i: usize, other_domain: bool) -> DirectoryUser {
    let domain = if other_domain { "a2" } else { "a" };
    let id = UserId::parse(&format!("10000000-0000-0000-0000-0000000000{}{i}", u8::from(other_domain))).unwrap();
    user(&format!("u{i}@{domain}.example")).id(&id).build()
}

fn target_id(i: usize) -> UserId {
    UserId::parse(&format!("00000000-0000-0000-0000-00000000000{i}")).unwrap()
}

prop_compose! {
    /// A small random directory: users u0..u5 in Tenant B with random values, one or two pairs, each with a random
    /// subset of them and a random set of Tenant A users (two people may share a local part, in one pair or across
    /// pairs), and a random ledger that may claim values the users hold or not.
    fn directory()(
        pairs in proptest::collection::vec(
            (
                proptest::collection::btree_set((0usize..6, proptest::bool::weighted(0.25)), 0..6),
                proptest::collection::btree_set(0usize..6, 0..6),
            ),
            1..3,
        ),
        held in proptest::collection::vec(proptest::collection::btree_set(0usize..VALUES.len(), 0..4), 6),
        owned in proptest::collection::vec(proptest::collection::btree_set(0usize..VALUES.len(), 0..3), 6),
        synced in proptest::collection::vec(proptest::bool::weighted(0.15), 6),
        ledger_known in proptest::bool::weighted(0.8),
    ) -> Observed {
        // Values are unique in a tenant: a value goes to the first user that draws it.
        let mut taken = BTreeSet::new();
        let targets: Vec<DirectoryUser> = (0..6).map(|i| {
            let mut u = user(&format!("u{i}@b.example")).id(&target_id(i)).build();
            u.certificate_user_ids = held[i].iter().filter(|v| taken.insert(**v)).map(|v| VALUES[*v].to_owned()).collect();
            if synced[i] { u.on_premises_sync_enabled = Some(true); }
            u
        }).collect();
        let mut ledger = Ledger::new();
        for (i, values) in owned.iter().enumerate() {
            ledger.set(target_id(i), values.iter().map(|v| VALUES[*v].to_owned()).collect());
        }
        let in_some_group: BTreeSet<usize> = pairs.iter().flat_map(|(_, in_b)| in_b.iter().copied()).collect();
        Observed {
            pairs: pairs.iter().enumerate().map(|(n, (in_a, in_b))| ObservedPair {
                name: format!("p{n}"),
                source_users: in_a.iter().map(|(i, other)| source_user(*i, *other)).collect(),
                target_users: in_b.iter().map(|i| targets[*i].clone()).collect(),
                ..Default::default()
            }).collect(),
            departed_targets: (0..6).filter(|i| !in_some_group.contains(i)).map(|i| targets[i].clone()).collect(),
            deleted_targets: vec![],
            ledger: if ledger_known { LedgerState::Loaded(ledger) } else { LedgerState::Missing },
            issued: BTreeMap::new(),
            observed_at: OffsetDateTime::now_utc(),
        }
    }
}

prop_compose! {
    /// Planner settings with the removal threshold either off (`allow_mass_removal`) or on at a low level, so both
    /// a plan that removes and one whose removals are held back are generated.
    fn plan_settings()(threshold_on in proptest::bool::ANY, max_users in 0usize..3, max_percent in 0.0f64..60.0) -> PlanSettings {
        let mut s = settings(&["subject-cn", "X509:<PN>{localpart}@x"]);
        s.allow_mass_removal = !threshold_on;
        s.removal_threshold = RemovalThreshold { max_users, max_percent };
        s
    }
}

/// The keys a target member must not be written for, worked out from the generated data alone (not from the
/// planner's output): within a pair, a local part two Tenant A users or two Tenant B members share; across pairs, a
/// Tenant B user matched to two different Tenant A users.
fn ambiguous_targets(observed: &Observed) -> BTreeSet<UserId> {
    let local = |u: &DirectoryUser| u.user_principal_name.split('@').next().unwrap().to_lowercase();
    let mut held = BTreeSet::new();
    let mut matched_to: BTreeMap<UserId, BTreeSet<UserId>> = BTreeMap::new();
    for pair in &observed.pairs {
        for target in &pair.target_users {
            let key = local(target);
            let sources: Vec<&DirectoryUser> = pair.source_users.iter().filter(|s| local(s) == key).collect();
            let twins = pair.target_users.iter().filter(|t| local(t) == key).count();
            if sources.len() > 1 || (twins > 1 && !sources.is_empty()) {
                held.insert(target.id.clone());
            } else if let [source] = sources[..] {
                matched_to.entry(target.id.clone()).or_default().insert(source.id.clone());
            }
        }
    }
    held.extend(matched_to.into_iter().filter(|(_, sources)| sources.len() > 1).map(|(target, _)| target));
    held
}

/// Every Tenant B user of the observation once (a user in the groups of two pairs is listed by both).
fn all_targets(observed: &Observed) -> impl Iterator<Item = &DirectoryUser> {
    let mut seen = BTreeSet::new();
    observed
        .pairs
        .iter()
        .flat_map(|p| p.target_users.iter())
        .chain(observed.departed_targets.iter())
        .filter(move |u| seen.insert(u.id.clone()))
}

/// Applies a plan to the observation as Graph would, giving the next run's observation.
fn applied(observed: &Observed, plan: &Plan) -> Observed {
    let mut next = observed.clone();
    let after: HashMap<&UserId, &UserChange> = plan.changes.iter().map(|c| (plan_user_id(c), c)).collect();
    let update = |u: &mut DirectoryUser| {
        if let Some(change) = after.get(&u.id) {
            u.certificate_user_ids = change.after();
        }
    };
    next.pairs.iter_mut().for_each(|p| p.target_users.iter_mut().for_each(update));
    next.departed_targets.iter_mut().for_each(update);
    next.ledger = LedgerState::Loaded(plan.ledger_after(&observed.ledger.ledger().cloned().unwrap_or_default()));
    next
}

fn plan_user_id(change: &UserChange) -> &UserId {
    &change.user.id
}

proptest! {
    #[test]
    fn values_not_in_the_ledger_are_never_removed((observed, settings) in (directory(), plan_settings())) {
        let plan = plan(&observed, &settings);
        let ledger = observed.ledger.ledger().cloned().unwrap_or_default();
        for change in &plan.changes {
            let id = plan_user_id(change);
            for removed in &change.remove {
                prop_assert!(ledger.owned(id).contains(removed), "removed {removed} that the ledger does not own");
            }
            for value in &change.before {
                prop_assert!(change.after().contains(value) || change.remove.contains(value));
            }
        }
    }

    #[test]
    fn applying_a_plan_then_planning_again_gives_an_empty_plan((observed, settings) in (directory(), plan_settings())) {
        let first = plan(&observed, &settings);
        let second = plan(&applied(&observed, &first), &settings);
        prop_assert!(second.changes.is_empty(), "second plan still changes {:?}", second.changes);
        prop_assert!(second.ledger_edits.is_empty());
    }

    #[test]
    fn the_result_never_exceeds_ten_values_nor_holds_a_duplicate((observed, settings) in (directory(), plan_settings())) {
        let plan = plan(&observed, &settings);
        let mut everywhere = BTreeSet::new();
        let changed: BTreeSet<&str> = plan.changes.iter().map(|c| c.user.id.as_str()).collect();
        for change in &plan.changes {
            let after = change.after();
            prop_assert!(after.len() <= MAX_VALUES_PER_USER);
            let unique: BTreeSet<_> = after.iter().collect();
            prop_assert_eq!(unique.len(), after.len());
            for v in &after { prop_assert!(everywhere.insert(v.clone()), "{} would be on two users", v); }
        }
        for user in all_targets(&observed).filter(|u| !changed.contains(u.id.as_str())) {
            for v in &user.certificate_user_ids { prop_assert!(everywhere.insert(v.clone()), "{} would be on two users", v); }
        }
    }

    #[test]
    fn a_restricted_plan_is_the_full_plan_seen_through_the_affected_users(
        (observed, settings) in (directory(), plan_settings()),
        affected in proptest::collection::btree_set(0usize..6, 0..6),
    ) {
        let full = plan(&observed, &settings);
        let original = observed.ledger.ledger().cloned().unwrap_or_default();
        let affected: BTreeSet<UserId> =
            affected.iter().map(|i| UserId::parse(&format!("00000000-0000-0000-0000-00000000000{i}")).unwrap()).collect();
        let restricted = full.restricted_to(&affected);
        // Every affected user's change is kept, plus those giving up a value an affected user gains.
        let in_scope: BTreeSet<&UserId> = restricted.changes.iter().map(|c| &c.user.id).collect();
        for change in &full.changes {
            prop_assert_eq!(in_scope.contains(&change.user.id), affected.contains(&change.user.id) || restricted.changes.iter().any(|r| r.add.iter().any(|v| change.remove.contains(v))));
        }
        for change in &restricted.changes {
            prop_assert!(full.changes.contains(change));
        }
        let (full_after, restricted_after) = (full.ledger_after(&original), restricted.ledger_after(&original));
        for id in original.users.keys().chain(full_after.users.keys()) {
            let expected = if in_scope.contains(id) || affected.contains(id) { full_after.owned(id) } else { original.owned(id) };
            prop_assert_eq!(restricted_after.owned(id), expected);
        }
        // Applying the restricted plan, then planning in full, finishes the job: restriction never loses work.
        let next = plan(&applied(&observed, &restricted), &settings);
        for change in &next.changes {
            prop_assert!(!affected.contains(&change.user.id), "affected user {} left unfinished", change.user.id);
        }
    }

    #[test]
    fn ambiguous_keys_never_produce_writes((observed, settings) in (directory(), plan_settings())) {
        let plan = plan(&observed, &settings);
        let ambiguous = ambiguous_targets(&observed);
        for change in &plan.changes {
            prop_assert!(!ambiguous.contains(&change.user.id), "{} written although ambiguous: {:?}", change.user.user_principal_name, change);
        }
        // And the report counts each of them: a held user is never silent.
        let reported: BTreeSet<&UserId> = plan.skipped.iter().map(|s| &s.user.id).collect();
        for id in &ambiguous {
            prop_assert!(reported.contains(id), "ambiguous user {} not reported as skipped", id);
        }
    }

    #[test]
    fn removals_held_back_by_the_threshold_remove_nothing((observed, settings) in (directory(), plan_settings())) {
        let plan = plan(&observed, &settings);
        if plan.removals_held_back.is_some() {
            prop_assert!(!settings.allow_mass_removal);
            prop_assert!(plan.changes.iter().all(|c| c.remove.is_empty()), "{:?}", plan.changes);
        }
    }
}
