//! Graph and Entra misbehaving: throttling, server errors, unavailability, requests that never answer, the token
//! endpoint failing. The emulator draws each fault from the scenario's seed; `Retry-After` is 1 s to keep the suite
//! short (Graph sends whole seconds [throttling]).
//!
//! Retryable faults (429, 503) come with a budget: the client paces `$batch` items after a throttled round (it sends
//! about what the last round got through, one round per `Retry-After`), so random throttling of half the items
//! shrinks the rounds to one item a second and a run takes minutes. Real Graph throttles by budget, not at random;
//! the budget keeps the rate high and the suite short.

use std::time::{Duration, Instant};

use certsync::demo::TENANT_B;
use graph_emulator::{FaultKind, Faults, RequestKind};

use super::world::{Scenario, finish};

fn graph_faults(rate: f64, kinds: &[FaultKind]) -> Faults {
    Faults { error_rate: rate, kinds: kinds.to_vec(), retry_after_secs: Some(1), ..Faults::default() }
}

fn count(injected: &serde_json::Value, kind: &str) -> u64 {
    injected[kind].as_u64().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_of_all_reads_and_writes_throttled_with_429_converge_exactly_once_graph_recovers() {
    let s = Scenario::start("throttled-429", 0x0429).await;
    s.faults(Faults { max_faults: Some(16), ..graph_faults(0.5, &[FaultKind::Throttle429]) });

    for _ in 0..2 {
        let run = s.sync().await;
        assert_ne!(run.status(), "no report", "{}", run.output.stderr());
    }

    let injected = s.injected().await;
    assert_eq!(count(&injected, "throttle_429"), 16, "the fault phase throttled for real: {injected}");
    s.converges().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_of_requests_failing_with_500_fail_runs_but_lose_nothing_and_converge_exactly() {
    let s = Scenario::start("internal-500", 0x0500).await;
    s.faults(graph_faults(0.3, &[FaultKind::Internal500]));

    // 500 is not retried (not transient by Graph's documentation): a failed read fails the run before it writes, a
    // failed write fails that user. Several runs reach different points of the plan.
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(s.sync().await.status().to_owned());
    }

    let injected = s.injected().await;
    assert!(count(&injected, "internal_500") >= 3, "{injected}");
    assert!(outcomes.iter().any(|o| o != "succeeded"), "a 30 % error rate failed something: {outcomes:?}");
    s.converges().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unavailable_503_with_retry_after_is_waited_out_and_converges_exactly() {
    let s = Scenario::start("unavailable-503", 0x0503).await;
    s.faults(Faults { max_faults: Some(10), ..graph_faults(0.5, &[FaultKind::Unavailable503]) });

    let run = s.sync().await;

    let injected = s.injected().await;
    assert_eq!(count(&injected, "unavailable_503"), 10, "{injected}");
    let waited = run.report["graph"]["tenantB"]["throttleWaitMs"].as_u64().unwrap_or_default()
        + run.report["graph"]["tenantA"]["throttleWaitMs"].as_u64().unwrap_or_default();
    assert!(waited >= 1000, "the run waited Retry-After before retrying: {}", run.report["graph"]);
    s.converges().await;
}

/// The emulator's `Timeout` fault hangs a request for 120 s; the client gives up on an attempt after 60 s
/// (`GraphOptions::request_timeout`) and retries. Two hung requests (the fault budget) cost one minute, in
/// parallel, mostly idle. TODO-performance: a configurable hang needs a one-line change in
/// graph-emulator/src/graph/mod.rs (`fault_error`), which this suite's owner may not edit; see the fault suite's notes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_requests_that_never_answer_are_abandoned_retried_and_converge_exactly() {
    let s = Scenario::start("timeout", 0x0504).await;
    s.faults(Faults { max_faults: Some(2), ..graph_faults(1.0, &[FaultKind::Timeout]) });

    let started = Instant::now();
    let run = s.sync().await;

    assert_eq!(count(&s.injected().await, "timeout"), 2);
    assert!(started.elapsed() >= Duration::from_secs(55), "the hung attempts were waited for: {:?}", started.elapsed());
    let transport = run.report["graph"]["tenantA"]["transportErrors"].as_u64().unwrap_or_default()
        + run.report["graph"]["tenantB"]["transportErrors"].as_u64().unwrap_or_default();
    assert!(transport >= 1, "an abandoned attempt is a transport error: {}", run.report["graph"]);
    assert_eq!(run.status(), "succeeded", "the retry after the timeout completes the run: {}", run.report);
    s.converges().await;
}

/// The token endpoint answers `500 server_error` / `503 temporarily_unavailable` to every request for a while. The
/// credential (azure_identity) retries with exponential backoff, so a run waits rather than fails; held at 100 % it
/// gives up after about 80 s, which is too slow for this suite, so the outage ends while the run still waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_failing_for_both_tenants_holds_every_write_back_then_recovery_converges_exactly() {
    let s = Scenario::start("token-endpoint", 0x7043).await;
    let before = s.directory().users(TENANT_B);

    s.faults(Faults { token_error_rate: 1.0, ..Faults::default() });
    let checked = s.before_run().await;
    let (child, output) = s.spawn_sync();
    let token_failures = || s.requests().iter().filter(|r| r.kind == RequestKind::Token && r.status >= 500).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while token_failures() < 4 {
        assert!(Instant::now() < deadline, "the credential stopped asking for a token:\n{}", output.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While no token is issued nothing reaches Graph and nothing changes.
    assert!(s.requests().iter().all(|r| r.kind == RequestKind::Token), "{:#?}", s.requests());
    assert_eq!(s.directory().users(TENANT_B), before);
    s.faults(Faults::default());
    let recovered = finish(child, output).await;
    s.after_run(&checked, "the run that waited for the token endpoint");
    s.phase(&format!("the run that waited for the token endpoint: {}", recovered.status()));
    assert_eq!(recovered.status(), "succeeded", "the run waited out the outage: {}", recovered.report);

    // Then flapping: some token requests fail, for either tenant, over two runs.
    s.faults(Faults { token_error_rate: 0.5, ..Faults::default() });
    for _ in 0..2 {
        s.sync().await;
    }

    assert!(count(&s.injected().await, "token") >= 1);
    s.converges().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_graph_and_token_fault_at_once_over_several_runs_converges_exactly() {
    let s = Scenario::start("everything-at-once", 0xC4A05).await;
    s.faults(Faults {
        token_error_rate: 0.3,
        max_faults: Some(30),
        ..graph_faults(0.25, &[FaultKind::Throttle429, FaultKind::Internal500, FaultKind::Unavailable503])
    });

    for _ in 0..5 {
        s.sync().await;
    }

    let injected = s.injected().await;
    let kinds_hit =
        ["throttle_429", "internal_500", "unavailable_503", "token"].iter().filter(|k| count(&injected, k) > 0);
    assert!(kinds_hit.count() >= 2, "several kinds of fault were injected: {injected}");
    s.converges().await;
}
