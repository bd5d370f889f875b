//! The fault suite (issue 9): Graph answering 429/500/503 at high rates or never answering, the token endpoint
//! failing, change notifications lost or duplicated, Azurite stopped mid-run, the process killed at random points of
//! apply. Each scenario is one test whose name says what it proves, with the same shape: a clean baseline, a week of
//! directory changes, the fault phase, then faults off, one clean run, and the convergence oracle (`oracle.rs`): every
//! Tenant B user holds exactly the expected values — no administrator value lost, no duplicate, no value of ours
//! left on a user who should have none, never more than 10 — and a further run writes nothing. After **every** run,
//! whatever it met, the oracle also checks that no value missing from the ledger was removed and that no user still
//! matched lost a value (`oracle::assert_nothing_lost`).
//!
//! | scenario (test) | proves |
//! |---|---|
//! | `graph::half_of_all_reads_and_writes_throttled_with_429_…` | 429 + `Retry-After` on half the reads and `$batch` items is waited out; nothing lost or doubled |
//! | `graph::a_third_of_requests_failing_with_500_…` | non-retried 500s fail runs or users midway without damage; the next run completes |
//! | `graph::service_unavailable_503_with_retry_after_…` | 503 + `Retry-After` is retried after the wait |
//! | `graph::graph_requests_that_never_answer_…` | a hung request is abandoned at the client timeout and retried; the run completes |
//! | `graph::the_token_endpoint_failing_for_both_tenants_…` | no token: nothing reaches Graph; the run waits out the outage; flapping tokens cost nothing |
//! | `graph::every_graph_and_token_fault_at_once_…` | all of the above mixed over several runs |
//! | `notifications::lost_notifications_…` | dropped notifications lose nothing: the timer's full sync is the net |
//! | `notifications::duplicated_notifications_…` | every notification twice: no user written twice |
//! | `storage::azurite_stopped_mid_run_…` | storage gone mid-run, a run without storage writes nothing, ownership survives |
//! | `crashes::a_run_killed_at_random_points_…` | `SIGKILL` while reading, before, inside and after the `$batch`: the next run completes exactly |
//! | `crashes::a_first_sync_continued_at_random_deadlines_…` | a first sync stopped at random soft deadlines, one continuation killed: every invocation loses nothing; the end is one run's state |
//! | `odd::a_member_page_shorter_than_its_count_…` | a `200` page missing a member its `@odata.count` counts fails the run before any write |
//! | `odd::user_members_listed_with_only_their_id_…` | user members without their fields fail the run before any write |
//! | `odd::a_member_page_whose_next_link_is_not_a_url_…` | a non-string `@odata.nextLink` fails the run before any write |
//! | `odd::users_answered_without_a_readable_authorization_info_…` | absent, null or mistyped `authorizationInfo` holds those users; the rest converge |
//! | `odd::a_run_whose_lease_was_taken_over_mid_apply_…` | a run frozen past its lease stops before its next round and its settle, and fails |
//! | `odd::a_ledger_deleted_after_the_first_run_…` | every run fails, naming the way back, until the ledger is restored |
//! | `odd::an_accepted_new_ledger_removes_nothing_…` | `--accept-new-ledger` removes nothing, says what it means, and names who still holds a value written before |
//! | `odd::a_tenant_b_user_matched_to_two_people_by_two_pairs_…` | held, both people named |
//! | `odd::a_tenant_id_spelled_as_a_domain_…` | refused before Graph or storage is reached |
//! | `odd::a_user_renamed_between_the_plan_and_the_write_…` | the re-read checks the match key again: not written |
//!
//! Randomness is seeded: each scenario prints its seed, and `FAULT_SEED=<n>` replays one.
//!
//! Run: `cargo nextest run --test faults` (Azurite from `$AZURITE_BIN` or `.tools/`, see tests/support).

use certsync_test_support::{app as helpers, azurite, host};

mod oracle;
mod world;

mod crashes;
mod graph;
mod notifications;
mod odd;
mod storage;
