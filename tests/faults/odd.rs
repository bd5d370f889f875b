//! Graph answering `200 OK` with content its documentation does not allow, and state lost under a run (issue 18):
//! a member page shorter than its count, user members without their fields, a malformed `@odata.nextLink`,
//! `authorizationInfo` absent, null or mistyped, a lease taken over mid-apply, a ledger deleted after the first run,
//! two pairs matching one Tenant B user to two people, and a tenant id spelled as a domain.
//!
//! The rule they prove: when what Graph or storage returns is not what the documentation promises, the run writes
//! nothing for the users concerned and says why. [`Scenario::sync`] checks after every run that no value missing
//! from the ledger was removed and that no still-matched user lost a value; each scenario then converges exactly.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use certsync::demo::{TENANT_A, TENANT_B};
use certsync::storage::BlobStore;
use graph_emulator::{EmulatorOptions, Faults, NewUser, OddAnswers, OddAuthorizationInfo};

use super::helpers::Output;
use super::oracle::{SourceUser, TargetUser};
use super::world::{Scenario, finish, ledger_blob};

fn odd(odd: OddAnswers) -> Faults {
    Faults { odd, ..Faults::default() }
}

/// Runs once with `answers` in force and asserts the run failed before any write, naming `reason`.
async fn fails_before_any_write(s: &Scenario, answers: OddAnswers, reason: &str) {
    s.faults(odd(answers));
    let run = s.sync().await;
    assert_eq!(run.status(), "failed", "{}", run.report);
    assert!(run.reason().contains(reason), "the reason names the problem ({reason:?}): {}", run.reason());
    assert_eq!(s.user_writes(), Vec::new(), "nothing was written from an odd answer");
    let served = s.injected().await["odd_answers"].as_u64().unwrap_or_default();
    assert!(served >= 1, "the emulator really served odd answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_page_shorter_than_its_count_fails_the_run_before_any_write() {
    let s = Scenario::start("short-member-page", 0x0D01).await;
    fails_before_any_write(&s, OddAnswers { short_member_pages: true, ..OddAnswers::default() }, "a short read").await;
    s.converges().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_members_listed_with_only_their_id_fail_the_run_before_any_write() {
    let s = Scenario::start("members-without-fields", 0x0D02).await;
    let answers = OddAnswers { members_without_fields: true, ..OddAnswers::default() };
    fails_before_any_write(&s, answers, "came back without what a user needs").await;
    s.converges().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_page_whose_next_link_is_not_a_url_fails_the_run_before_any_write() {
    let s = Scenario::start("malformed-next-link", 0x0D03).await;
    fails_before_any_write(&s, OddAnswers { malformed_next_link: true, ..OddAnswers::default() }, "nextLink").await;
    s.converges().await;
}

/// Three users the run would change are answered without a readable `authorizationInfo`, one way each: absent,
/// null, a string instead of a list. Those three are held, with the reason; everyone else converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_answered_without_a_readable_authorization_info_are_held_and_the_rest_converge() {
    let s = Scenario::start("odd-authorization-info", 0x0D04).await;
    let current: BTreeMap<String, Vec<String>> =
        s.directory().users(TENANT_B).into_iter().map(|u| (u.id, u.certificate_user_ids)).collect();
    let expected = s.model.clone().converge();
    let changing: Vec<String> =
        expected.iter().filter(|(id, values)| current.get(*id) != Some(values)).map(|(id, _)| id.clone()).collect();
    assert!(changing.len() >= 3, "the week of changes changes users: {changing:?}");
    let kinds = [OddAuthorizationInfo::Absent, OddAuthorizationInfo::Null, OddAuthorizationInfo::NotAList];
    let odd_users: BTreeMap<String, OddAuthorizationInfo> = changing.iter().cloned().zip(kinds).collect();

    s.faults(odd(OddAnswers { authorization_info: odd_users.clone(), ..OddAnswers::default() }));
    let run = s.sync().await;

    // A held user keeps its values, so a value moving away from it cannot reach its new holder in this run: that
    // user's write fails on uniqueness and is reported in conflict with the held one. Everyone else is written.
    assert!(["succeeded", "completedWithFailures"].contains(&run.status()), "{}", run.report);
    let conflicts = run.report["conflicts"].as_array().cloned().unwrap_or_default();
    assert!(
        conflicts.iter().all(|c| odd_users.contains_key(c["holderId"].as_str().unwrap_or_default())),
        "only values still on a held user conflict: {}",
        run.report
    );
    let blocked: Vec<&str> = conflicts.iter().filter_map(|c| c["user"]["id"].as_str()).collect();
    let after: BTreeMap<String, Vec<String>> =
        s.directory().users(TENANT_B).into_iter().map(|u| (u.id, u.certificate_user_ids)).collect();
    for (id, kind) in &odd_users {
        assert_eq!(after[id], current[id], "user {id} ({kind:?}) was left exactly as it was");
        let skip = run.report["skipped"].as_array().into_iter().flatten().find(|s| s["user"]["id"] == id.as_str());
        let reason = skip.and_then(|s| s["reason"].as_str()).unwrap_or_default();
        assert!(reason.contains("authorizationInfo"), "user {id} ({kind:?}) is reported held: {}", run.report);
    }
    assert!(s.user_writes().iter().all(|w| !odd_users.keys().any(|id| w.path.contains(id.as_str()))));
    for (id, values) in
        expected.iter().filter(|(id, _)| !odd_users.contains_key(*id) && !blocked.contains(&id.as_str()))
    {
        assert_eq!(&after[id], values, "user {} converged while the others were held", s.model.target(id).upn);
    }
    s.converges().await;
}

/// Run 1 is frozen (`SIGSTOP`: a stalled host) just after its first write, longer than its lease lasts; run 2 takes
/// the lease and completes. Thawed, run 1 must notice before the write of every chunk still in flight (their re-reads
/// may be done) and before it settles the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lease_was_taken_over_mid_apply_stops_writing_and_fails() {
    let s = Scenario::start_with(
        "lease-taken-over",
        0x0D05,
        EmulatorOptions { latency: Duration::from_millis(25), ..EmulatorOptions::default() },
    )
    .await;
    let before = s.before_run().await;
    let (child, output) = s.spawn_sync();
    let deadline = freeze_after_first_write(&s, &child, &output).await;
    s.phase("run 1 frozen after its first write");
    // The lease lasts 15 s from its last renewal (docs/decisions.md), and a full sync does not wait for a held one.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let second = loop {
        let run = s.sync().await;
        if run.status() != "skipped" || Instant::now() > deadline {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(second.status(), "succeeded", "run 2 took the expired lease: {}", second.report);

    let writes_before_thaw = s.user_writes().len();
    signal(child.id(), "CONT");
    let first = finish(child, output).await;
    s.after_run(&before, "the run whose lease was taken over");

    assert_eq!(first.status(), "failed", "{}", first.report);
    assert!(first.reason().contains("lease was lost"), "{}", first.reason());
    assert_eq!(s.user_writes().len(), writes_before_thaw, "run 1 wrote nothing once thawed");
    s.converges().await;
}

/// Waits for the run's first user write and freezes it there (`SIGSTOP`); returns the deadline it waited against.
async fn freeze_after_first_write(s: &Scenario, child: &std::process::Child, output: &Output) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.user_writes().is_empty() {
        assert!(Instant::now() < deadline, "the run never wrote:\n{}", output.stderr());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    signal(child.id(), "STOP");
    deadline
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// The ledger is deleted after the first runs. Every run then fails, naming the way back; the ledger restored (what
/// soft delete gives back) the runs go on exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_deleted_after_the_first_run_fails_every_run_until_it_is_restored() {
    let s = Scenario::start("ledger-deleted", 0x0D06).await;
    let state = s.state_store().await;
    let kept = state.get(&ledger_blob()).await.expect("read the ledger").expect("the baseline wrote a ledger");
    assert!(state.delete(&ledger_blob()).await.expect("delete the ledger"));

    for _ in 0..2 {
        let run = s.sync().await;
        assert_eq!(run.status(), "failed", "{}", run.report);
        assert!(run.reason().contains("--accept-new-ledger"), "the reason names the way back: {}", run.reason());
        assert_eq!(s.user_writes(), Vec::new());
        assert_eq!(state.get(&ledger_blob()).await.unwrap(), None, "no fresh ledger was started");
    }

    state.put(&ledger_blob(), kept.bytes, "application/json").await.expect("restore the ledger");
    s.converges().await;
}

/// The ledger is deleted and cannot be restored: `--accept-new-ledger` starts a new one, says what that means, and
/// removes nothing; every value written before is an administrator's from then on (the oracle's model says so too).
/// A value of ours left on a user who left the group is not silent: the user who should now get it is reported in
/// conflict with that holder, and once an administrator removes it there (docs/operations.md) the runs converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_new_ledger_removes_nothing_and_names_the_holders_of_values_written_before() {
    let mut s = Scenario::start("ledger-accepted", 0x0D07).await;
    let state = s.state_store().await;
    assert!(state.delete(&ledger_blob()).await.expect("delete the ledger"));

    let run = s.sync_with(&["--accept-new-ledger"]).await;

    assert_ne!(run.status(), "failed", "{}", run.report);
    assert_eq!(run.report["totals"]["valuesRemoved"], 0, "{}", run.report);
    let notes = run.report["notes"].to_string();
    assert!(notes.contains("treated as administrators'"), "{notes}");
    for user in &mut s.model.target {
        user.administrator_values.append(&mut user.owned);
    }
    s.assert_oracle();
    // The week's changes moved a key to a new account while the old one left the group: its values stayed there.
    let conflicts = run.report["conflicts"].as_array().cloned().unwrap_or_default();
    assert!(!conflicts.is_empty(), "the value left on the departed user is reported: {}", run.report);
    for conflict in &conflicts {
        let holder = conflict["holderId"].as_str().expect("the holder is named").to_owned();
        let value = conflict["value"].as_str().expect("the value is named").to_owned();
        assert!(!s.model.target(&holder).member, "the holder {holder} is a user who left the group");
        // The administrator's review: the departed user's value goes, by hand.
        s.directory().update_user(TENANT_B, &holder, |u| u.certificate_user_ids.retain(|v| *v != value));
        let user = s.model.target_mut(&holder);
        user.values.retain(|v| *v != value);
        user.administrator_values.retain(|v| *v != value);
    }
    s.converges().await;
}

/// Pair 2 matches `twin@tenant-b` to twin@fabrikam while pair 1 matches it to twin@tenant-a: two people. It is held
/// with both named; nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_b_user_matched_to_two_people_by_two_pairs_is_held_with_both_named() {
    let mut s = Scenario::start("two-pairs-one-user", 0x0D08).await;
    let directory = s.directory();
    let group_a2 = directory.add_group(TENANT_A, "CBA users (Fabrikam)");
    let group_b2 = directory.add_group(TENANT_B, "CBA users (Fabrikam, resource tenant)");
    let first = directory.add_user(TENANT_A, NewUser::new("twin@tenant-a.example").mail("twin@tenant-a.example"));
    directory.add_member(TENANT_A, &s.group_a, &first);
    let second = directory.add_user(TENANT_A, NewUser::new("twin@fabrikam.example").mail("twin@fabrikam.example"));
    directory.add_member(TENANT_A, &group_a2, &second);
    let twin = directory.add_user(TENANT_B, NewUser::new("twin@tenant-b.example"));
    directory.add_member(TENANT_B, &s.group_b, &twin);
    directory.add_member(TENANT_B, &group_b2, &twin);
    // The oracle keys on the UPN's local part across every group, so it sees the same two people.
    for (id, upn) in [(&first, "twin@tenant-a.example"), (&second, "twin@fabrikam.example")] {
        s.model.source.push(SourceUser { id: id.clone(), upn: upn.into(), member: true });
    }
    s.model.target.push(TargetUser {
        id: twin.clone(),
        upn: "twin@tenant-b.example".into(),
        member: true,
        synced: false,
        values: Vec::new(),
        owned: Vec::new(),
        administrator_values: Vec::new(),
    });
    let pairs = format!("{}->{};{group_a2}->{group_b2}", s.group_a, s.group_b);
    s.env.insert("SYNC_PAIRS".into(), pairs);

    let run = s.sync().await;

    assert_eq!(run.status(), "succeeded", "{}", run.report);
    assert!(s.directory().users(TENANT_B).iter().any(|u| u.id == twin && u.certificate_user_ids.is_empty()));
    let skip = run.report["skipped"].as_array().into_iter().flatten().find(|s| s["user"]["id"] == twin.as_str());
    let reason = skip.and_then(|s| s["reason"].as_str()).unwrap_or_default();
    assert!(
        reason.contains("twin@tenant-a.example") && reason.contains("twin@fabrikam.example"),
        "both people are named: {}",
        run.report
    );
    assert!(run.report["totals"]["ambiguous"].as_u64().unwrap_or_default() >= 1, "{}", run.report["totals"]);
    s.assert_oracle();
    s.converges().await;
}

/// `TENANT_B_ID` spelled as the tenant's domain would have named a second ledger and lease: the run refuses to
/// start, naming the setting, and reaches neither Graph nor storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_id_spelled_as_a_domain_is_refused_before_anything_is_read_or_written() {
    let mut s = Scenario::start("tenant-as-domain", 0x0D09).await;
    let state = s.state_store().await;
    let blobs = state.list("").await.expect("list the state container");
    let guid = s.env.insert("TENANT_B_ID".into(), "tenant-b.example".into()).expect("the scenario sets it");

    let run = s.sync().await;

    assert_eq!(run.status(), "no report", "a wrong setting stops the run before it starts");
    assert!(run.output.stderr().contains("TENANT_B_ID"), "the setting is named:\n{}", run.output.stderr());
    assert!(s.requests().is_empty(), "not even a token was asked for: {:#?}", s.requests());
    assert_eq!(state.list("").await.unwrap(), blobs, "no second ledger or lease");

    s.env.insert("TENANT_B_ID".into(), guid);
    s.converges().await;
}

/// A user renamed between the plan and its write (its UPN, so its match key, changes while the run is frozen after
/// its first write) is not written: the values were meant for whoever held the old key. The next run matches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_renamed_between_the_plan_and_the_write_is_not_written() {
    let mut s = Scenario::start_with(
        "renamed-before-write",
        0x0D0A,
        EmulatorOptions { latency: Duration::from_millis(25), ..EmulatorOptions::default() },
    )
    .await;
    let renamed = s.model.target.iter().find(|u| u.upn == "new1@tenant-b.example").expect("a new pair").id.clone();
    let before = s.before_run().await;
    let (child, output) = s.spawn_sync();
    // The users losing values are written first, in a round of their own; the new pairs come in the next one.
    freeze_after_first_write(&s, &child, &output).await;
    let upn = "someone-else@tenant-b.example";
    s.directory().update_user(TENANT_B, &renamed, |u| u.user_principal_name = upn.into());
    s.model.target_mut(&renamed).upn = upn.into();
    signal(child.id(), "CONT");
    let run = finish(child, output).await;
    s.after_run(&before, "the run that met a rename");

    assert_eq!(run.status(), "completedWithFailures", "{}", run.report);
    let change = run.report["changes"].as_array().into_iter().flatten().find(|c| c["user"]["id"] == renamed.as_str());
    let message = change.and_then(|c| c["error"]["message"].as_str()).unwrap_or_default();
    assert!(message.contains("changed since the plan"), "the renamed user is not written, and why: {}", run.report);
    assert!(s.user_writes().iter().all(|w| !w.path.contains(renamed.as_str())), "no write reached the renamed user");
    s.converges().await;
}
