//! Writing certificateUserIds through `$batch`: per-item outcomes, per-item throttling, typed refusals.

use certsync::{domain::UserId, graph::GraphError};
use graph_emulator::{FaultKind, Faults, NewUser, RequestKind};

use crate::helpers::{READ_WRITE, TestGraph};

fn value(upn: &str) -> Vec<String> {
    vec![format!("X509:<PN>{upn}")]
}

#[tokio::test]
async fn a_write_replaces_the_whole_collection() {
    let graph = TestGraph::start().await;
    let user = graph.add(NewUser::new("w@x.test").certificate_user_ids(["X509:<PN>old@x.test"]));
    let client = graph.client_with_roles(READ_WRITE);
    let new = vec!["X509:<PN>w@x.test".to_owned(), "X509:<RFC822>w@x.test".to_owned()];

    let first = client.set_certificate_user_ids(vec![(user.clone(), new.clone())]).await;
    assert!(first[0].1.is_ok(), "{:?}", first[0].1);
    assert_eq!(graph.certificate_user_ids(&user), new);

    let cleared = client.set_certificate_user_ids(vec![(user.clone(), Vec::new())]).await;
    assert!(cleared[0].1.is_ok());
    assert!(graph.certificate_user_ids(&user).is_empty());
}

#[tokio::test]
async fn throttled_items_are_retried_until_written_while_conflicts_are_reported_with_code_message_and_request_id() {
    // Arrange: 16 writes; two take values another user already holds. About one Graph request in seven is throttled
    // (seeded, so the run is reproducible), batch items each on their own [json-batching].
    let graph = TestGraph::start().await;
    let holder =
        graph.add(NewUser::new("holder@x.test").certificate_user_ids(["X509:<PN>taken-0", "X509:<PN>taken-1"]));
    let mut writes: Vec<(UserId, Vec<String>)> = Vec::new();
    for i in 0..16 {
        let upn = format!("user{i}@x.test");
        let user = graph.add_user(&upn);
        let values = if i < 2 { vec![format!("X509:<PN>taken-{i}")] } else { value(&upn) };
        writes.push((user, values));
    }
    let client = graph.client_with_roles(READ_WRITE);
    graph.emulator.set_faults(Faults {
        error_rate: 0.15,
        kinds: vec![FaultKind::Throttle429],
        seed: 13,
        ..Faults::default()
    });
    graph.directory().clear_requests();

    // Act
    let results = client.set_certificate_user_ids(writes.clone()).await;

    // Assert: per-item 429s happened, and every item but the conflicts ended written.
    let requests = graph.graph_requests();
    let throttled_items = requests.iter().filter(|r| r.via_batch && r.method == "PATCH" && r.status == 429).count();
    assert!(throttled_items > 0, "the seed must throttle some items: {requests:#?}");
    assert_eq!(results.len(), 16);
    for ((user, values), (answered, result)) in writes.iter().zip(&results) {
        assert_eq!(user, answered, "results keep the input order");
        if values[0].starts_with("X509:<PN>taken-") {
            let error = result.as_ref().expect_err("a taken value conflicts");
            assert!(error.is_uniqueness_conflict(), "{error:?}");
            let GraphError::Api { status, code, message, request_id, .. } = error else { panic!("{error:?}") };
            assert_eq!(*status, 400);
            assert_eq!(code, "Request_BadRequest");
            assert!(message.contains("Another object with the same value"), "{message}");
            assert!(request_id.as_deref().is_some_and(|id| !id.is_empty()));
            assert!(graph.certificate_user_ids(user).is_empty(), "nothing written on a conflict");
        } else {
            assert!(result.is_ok(), "{user}: {result:?}");
            assert_eq!(&graph.certificate_user_ids(user), values);
        }
    }
    assert_eq!(graph.certificate_user_ids(&holder).len(), 2, "the holder keeps its values");

    // Only throttled items went out again: each PATCH succeeded at most once.
    let patches_ok = requests.iter().filter(|r| r.via_batch && r.method == "PATCH" && r.status == 204).count();
    assert_eq!(patches_ok, 14);
    let metrics = client.metrics();
    assert!(metrics.throttled_responses as usize >= throttled_items);
    assert!(metrics.retries as usize >= throttled_items);
    assert!(metrics.throttle_wait_ms >= 900, "Retry-After was honoured: {metrics:?}");
    assert!(requests.iter().filter(|r| r.kind == RequestKind::Batch).count() >= 2);
}

#[tokio::test]
async fn a_synced_user_is_refused_with_a_typed_error_naming_entra_connect() {
    let graph = TestGraph::start().await;
    let synced = graph.add(NewUser::new("synced@x.test").synced(true));
    let cloud = graph.add_user("cloud@x.test");
    let client = graph.client_with_roles(READ_WRITE);

    let results = client
        .set_certificate_user_ids(vec![
            (synced.clone(), value("synced@x.test")),
            (cloud.clone(), value("cloud@x.test")),
        ])
        .await;

    let error = results[0].1.as_ref().unwrap_err();
    assert!(error.is_synced_user_rejection(), "{error:?}");
    assert!(!error.is_uniqueness_conflict());
    assert!(error.to_string().contains("Microsoft Entra Connect"), "{error}");
    assert!(results[1].1.is_ok(), "one refusal does not fail the batch");
}

#[tokio::test]
async fn writing_without_user_readwrite_all_is_forbidden_with_a_permission_and_role_hint() {
    let graph = TestGraph::start().await;
    let user = graph.add_user("ro@x.test");
    let client = graph.client_with_roles(&["GroupMember.Read.All", "User.Read.All"]);

    let results = client.set_certificate_user_ids(vec![(user, value("ro@x.test"))]).await;

    let error = results[0].1.as_ref().unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(
            "set certificateUserIds failed: HTTP 403 Authorization_RequestDenied: Insufficient privileges"
        ),
        "{text}"
    );
    assert!(text.contains("(request-id "), "{text}");
    assert!(text.contains("User.ReadWrite.All"), "{text}");
    assert!(text.contains("Privileged Authentication Administrator"), "{text}");
}
