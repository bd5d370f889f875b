//! Throttling budgets and injected faults: runs finish when they can, give up in bounded time when they cannot.

use std::time::{Duration, Instant};

use certsync::graph::{GraphError, GraphOptions, MembershipScope, USER_SELECT};
use graph_emulator::{EmulatorOptions, FaultKind, Faults, Throttling};

use crate::helpers::{READ_WRITE, TestGraph};

fn failing(kind: FaultKind) -> Faults {
    Faults { error_rate: 1.0, kinds: vec![kind], seed: 1, ..Faults::default() }
}

#[tokio::test]
async fn a_run_over_a_small_budget_completes_and_reports_its_throttle_waits() {
    // 40 resource units per 10 s (4 per second); 44 writes cost 44 [throttling-limits].
    let graph = TestGraph::start_with(EmulatorOptions {
        throttling: Throttling::Custom { resource_units_per_10s: 40, writes_per_150s: 1_000 },
        ..EmulatorOptions::default()
    })
    .await;
    let (_, users) = graph.group_of_users("budget", 44);
    let client = graph.client_with_roles(READ_WRITE);
    let writes = users.iter().map(|user| (user.clone(), vec![format!("X509:<PN>{user}")])).collect();

    let results = client.set_certificate_user_ids(writes).await;

    assert!(results.iter().all(|(_, result)| result.is_ok()), "{results:?}");
    assert!(users.iter().all(|user| graph.certificate_user_ids(user).len() == 1));
    let metrics = client.metrics();
    assert!(metrics.throttled_responses >= 4, "{metrics:?}");
    assert!(metrics.throttle_wait_ms >= 900, "the items waited their Retry-After: {metrics:?}");
    assert!(metrics.max_throttle_limit_percentage.is_some_and(|p| p > 0.8), "{metrics:?}");
    assert_eq!(metrics.last_resource_unit, Some(1));
    assert_eq!(metrics.writes, 44 + metrics.retries, "every retry is another write sent");
}

#[tokio::test]
async fn writes_beyond_the_write_budget_all_land_paced_by_retry_after_not_dropped_after_a_few_attempts() {
    // 300 writes per 150 s, a tenth of the documented budget the client paces to: a full bucket of 300, refilled at 2
    // per second. 330 writes: the last 30 need ~15 s of refill, far more than max_attempts × Retry-After (1 s).
    // Resending every pending item at once would exhaust the attempts; the pacer learns the smaller budget from
    // Graph's first refusal and its x-ms-throttle-limit-percentage instead.
    let graph = TestGraph::start_with(EmulatorOptions {
        throttling: Throttling::Custom { resource_units_per_10s: 100_000, writes_per_150s: 300 },
        ..EmulatorOptions::default()
    })
    .await;
    let (_, users) = graph.group_of_users("write-budget", 330);
    let client = graph.client_with_roles(READ_WRITE);
    let writes = users.iter().map(|user| (user.clone(), vec![format!("X509:<PN>{user}")])).collect();

    let results = client.set_certificate_user_ids(writes).await;

    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "{} of 330 writes failed, e.g. {:?}", failed.len(), failed.first());
    let metrics = client.metrics();
    assert!(metrics.throttle_wait_ms + metrics.paced_wait_ms >= 10_000, "paced by Graph's budget: {metrics:?}");
    // Resending every pending item each round drew 240 throttled responses here; rounds paced by what the last one
    // got through about 100; the pacer draws the 30 of the first burst and a probe or two.
    assert!(metrics.throttled_responses < 40, "paced, not hammering: {metrics:?}");
}

#[tokio::test]
async fn timeouts_are_retried_at_most_max_attempts_times_with_backoff() {
    let graph = TestGraph::start().await;
    let (group, _) = graph.group_of_users("slow", 1);
    let app = graph.register_app(READ_WRITE);
    let options = GraphOptions { max_attempts: 3, request_timeout: Duration::from_millis(300), ..graph.options() };
    let client = graph.secret_client(&app, options);
    graph.emulator.set_faults(failing(FaultKind::Timeout));
    let started = Instant::now();

    let error = client.group_members(&group, MembershipScope::Direct, USER_SELECT).await.unwrap_err();

    assert!(matches!(error, GraphError::Transport { .. }), "{error:?}");
    let metrics = client.metrics();
    assert_eq!((metrics.transport_errors, metrics.retries), (3, 2), "{metrics:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "gave up in {:?}", started.elapsed());
}

#[tokio::test]
async fn throttling_is_retried_at_most_max_attempts_times() {
    let graph = TestGraph::start().await;
    let (group, _) = graph.group_of_users("busy", 1);
    let app = graph.register_app(READ_WRITE);
    let client = graph.secret_client(&app, GraphOptions { max_attempts: 2, ..graph.options() });
    graph.emulator.set_faults(failing(FaultKind::Unavailable503));
    graph.directory().clear_requests();

    let error = client.group_members(&group, MembershipScope::Direct, USER_SELECT).await.unwrap_err();

    let GraphError::Throttled { attempts, status, request_id, .. } = &error else { panic!("{error:?}") };
    assert_eq!((*attempts, *status), (2, 503));
    assert!(request_id.is_some());
    assert_eq!(graph.graph_requests().len(), 2, "exactly max_attempts requests");
    assert_eq!(client.metrics().throttled_responses, 2);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_wait_budget_fails_at_once_as_throttled() {
    let graph = TestGraph::start().await;
    let (group, _) = graph.group_of_users("over", 1);
    let app = graph.register_app(READ_WRITE);
    let options = GraphOptions { max_total_wait: Duration::from_millis(500), ..graph.options() };
    let client = graph.secret_client(&app, options);
    graph.emulator.set_faults(failing(FaultKind::Throttle429));
    let started = Instant::now();

    let error = client.group_members(&group, MembershipScope::Direct, USER_SELECT).await.unwrap_err();

    assert!(matches!(error, GraphError::Throttled { attempts: 1, status: 429, .. }), "{error:?}");
    assert!(error.is_throttled());
    assert!(started.elapsed() < Duration::from_secs(1), "no wait past the budget: {:?}", started.elapsed());
    assert_eq!(client.metrics().throttle_wait_ms, 0);
}

#[tokio::test]
async fn a_whole_batch_that_keeps_failing_fails_each_of_its_items() {
    let graph = TestGraph::start().await;
    let (_, users) = graph.group_of_users("outer", 3);
    let app = graph.register_app(READ_WRITE);
    let options = GraphOptions { max_attempts: 2, request_timeout: Duration::from_millis(300), ..graph.options() };
    let client = graph.secret_client(&app, options);
    graph.emulator.set_faults(failing(FaultKind::Timeout));

    let results = client
        .set_certificate_user_ids(users.iter().map(|user| (user.clone(), vec![format!("X509:<PN>{user}")])).collect())
        .await;

    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|(_, result)| matches!(result, Err(GraphError::Transport { .. }))), "{results:?}");
}
