//! Change notifications end to end: the emulator delivers real notifications (and validation handshakes) to the host
//! shim, which drives the real binary's `function-webhook` and `function-notifications` as the Functions host would.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use certsync::demo::{self, ADMIN_VALUE, TENANT_A, TENANT_B};
use certsync::storage::{AzureBlobStore, BlobStore, StorageConnection};
use graph_emulator::{EmulatorOptions, FaultKind, Faults, NewUser, RequestKind, RequestRecord};
use serde_json::{Value, json};

use super::functions_host::{Dequeued, queue_trigger_envelope};
use super::helpers::{Output, TestApp, World, spawn_binary, timer_envelope};
use super::host::{HostShim, MAX_DEQUEUE_COUNT};

const FUNCTION_KEY: &str = "test-function-key";
const SETTLE: Duration = Duration::from_secs(30);

/// The demo world, with the subscription permission granted, the shim in front of the binary, and the binary.
struct Notified {
    world: World,
    shim: HostShim,
    app: TestApp,
}

impl Notified {
    async fn start() -> Self {
        Self::start_with(EmulatorOptions::default()).await
    }

    async fn start_with(options: EmulatorOptions) -> Self {
        let mut world = World::start_with(options).await;
        grant_subscription_permission(&world);
        let shim = HostShim::bind(FUNCTION_KEY).await;
        world.env.insert("WEBHOOK_NOTIFICATION_URL".into(), shim.notification_url());
        let app = TestApp::spawn(&world.env).await;
        shim.connect(app.port);
        Self { world, shim, app }
    }

    fn directory(&self) -> graph_emulator::Directory {
        self.world.emulator.directory()
    }

    /// The timer: a full sync, then the subscriptions (created here, through the real handshake).
    async fn run_timer(&self) -> Value {
        let (status, _, reply) = self.app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
        assert_eq!(status, 200, "{reply}\n{}", self.app.output());
        reply
    }

    /// Subscriptions exist and each group has its delta position: the first notification of a group reconciles its
    /// pair in full (there is no earlier position to compare with), so one harmless change per group comes first.
    async fn warm_up(&self) {
        let reply = self.run_timer().await;
        let logs = reply["Logs"].to_string();
        assert_eq!(logs.matches("subscriptions: created").count(), 2, "the timer subscribes after its sync: {reply}");
        assert!(!logs.contains(FUNCTION_KEY), "{reply}");
        assert_eq!(self.directory().subscriptions(TENANT_A).len(), 1, "{}", self.app.output());
        assert_eq!(self.directory().subscriptions(TENANT_B).len(), 1, "{}", self.app.output());
        let directory = self.directory();
        let device_a = directory.add_device(TENANT_A, "warm-up A");
        directory.add_member(TENANT_A, &self.world.world.group_a, &device_a);
        let device_b = directory.add_device(TENANT_B, "warm-up B");
        directory.add_member(TENANT_B, &self.world.world.group_b, &device_b);
        self.shim.settle("the warm-up notifications", SETTLE, || successes(&self.shim) >= 2).await;
        directory.clear_requests();
    }

    fn values(&self, tenant_b_user: &str) -> Vec<String> {
        self.directory().user(TENANT_B, tenant_b_user).map(|u| u.certificate_user_ids).unwrap_or_default()
    }

    /// Waits until a Tenant B user holds exactly `expected` and every queued message was handled.
    async fn converge(&self, user: &str, expected: &[&str]) {
        let what = format!("{user} holding {expected:?}");
        self.shim.settle(&what, SETTLE, || self.values(user) == expected).await;
    }
}

fn grant_subscription_permission(world: &World) {
    let directory = world.emulator.directory();
    demo::register_app(&directory, TENANT_A, &[demo::APP_A_ROLES, &["Group.Read.All"]].concat());
    demo::register_app(&directory, TENANT_B, &[demo::APP_B_ROLES, &["Group.Read.All"]].concat());
}

fn successes(shim: &HostShim) -> usize {
    shim.invocations().iter().filter(|i| i.status == 200).count()
}

fn graph_requests(world: &World) -> Vec<RequestRecord> {
    world.emulator.directory().requests().into_iter().filter(|r| r.kind != RequestKind::Token).collect()
}

fn delta_reads(world: &World, tenant: &str) -> usize {
    graph_requests(world)
        .iter()
        .filter(|r| r.path.contains("/groups/delta") && r.tenant.as_deref() == Some(tenant))
        .count()
}

fn user_writes(world: &World) -> Vec<RequestRecord> {
    graph_requests(world).into_iter().filter(|r| r.method == "PATCH" && r.path.contains("/users/")).collect()
}

/// The last successful queue invocation's report scope.
fn last_scope(shim: &HostShim) -> Value {
    let invocations = shim.invocations();
    let last = invocations.iter().rev().find(|i| i.status == 200).expect("a successful invocation");
    last.reply["ReturnValue"]["scope"].clone()
}

/// Seeds a matched pair of users: one in Tenant B's group now, the Tenant A one created (not yet a member).
fn seed_frank(world: &World) -> (String, String) {
    let directory = world.emulator.directory();
    let frank_b = directory.add_user(TENANT_B, NewUser::new("frank@tenant-b.example"));
    directory.add_member(TENANT_B, &world.world.group_b, &frank_b);
    let frank_a = directory.add_user(TENANT_A, NewUser::new("frank@tenant-a.example"));
    (frank_a, frank_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_added_to_the_tenant_a_group_gets_its_value_through_a_notification_without_a_full_sync() {
    let n = Notified::start().await;
    let (frank_a, frank_b) = seed_frank(&n.world);
    n.warm_up().await;
    assert!(n.values(&frank_b).is_empty());

    n.directory().add_member(TENANT_A, &n.world.world.group_a, &frank_a);

    n.converge(&frank_b, &["X509:<S>CN=frank"]).await;
    // Every message went through the real host's conversion (JSON-encoded twice) and none was dropped.
    let invocations = n.shim.invocations();
    assert!(!invocations.is_empty());
    for invocation in &invocations {
        assert_eq!(invocation.status, 200, "{invocation:#?}");
        assert!(!invocation.reply["Logs"].to_string().contains("malformed"), "{invocation:#?}");
    }
    let seen = graph_requests(&n.world);
    assert_eq!(delta_reads(&n.world, TENANT_A), 1, "one delta query for the changed group: {seen:#?}");
    assert_eq!(delta_reads(&n.world, TENANT_B), 0, "the unchanged group is not asked: {seen:#?}");
    let writes = user_writes(&n.world);
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert!(writes[0].path.contains(&frank_b), "only the affected user is written: {writes:#?}");
    let scope = last_scope(&n.shim);
    assert_eq!(scope["kind"], "incremental", "{scope}");
    assert_eq!(scope["fullResync"], Value::Null, "{scope}");
    assert_eq!(scope["affectedUsers"], 1, "{scope}");
    // Everyone else is as the full sync left them.
    assert_eq!(n.world.values_of("alice"), ["X509:<S>CN=alice"]);
    assert_eq!(n.world.values_of("bob"), [ADMIN_VALUE, "X509:<S>CN=bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_removed_from_the_tenant_a_group_loses_our_value_and_keeps_the_administrators() {
    let n = Notified::start().await;
    n.warm_up().await;
    assert_eq!(n.world.values_of("bob"), [ADMIN_VALUE, "X509:<S>CN=bob"]);
    let bob_b = n.world.world.b["bob"].clone();

    n.directory().remove_member(TENANT_A, &n.world.world.group_a, &n.world.world.a["bob"]);

    n.converge(&bob_b, &[ADMIN_VALUE]).await;
    let seen = graph_requests(&n.world);
    assert_eq!(delta_reads(&n.world, TENANT_A), 1, "{seen:#?}\n{:#?}", n.shim.invocations());
    let writes = user_writes(&n.world);
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert!(writes[0].path.contains(&bob_b), "{writes:#?}");
    assert_eq!(n.world.values_of("alice"), ["X509:<S>CN=alice"], "alice is untouched");
    assert_eq!(last_scope(&n.shim)["affectedUsers"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicated_reordered_and_replayed_notifications_converge_to_the_same_state() {
    let n = Notified::start().await;
    let (frank_a, frank_b) = seed_frank(&n.world);
    n.warm_up().await;
    n.world.emulator.set_faults(Faults { notification_duplicate_rate: 1.0, ..Faults::default() });
    let (alice_b, bob_b) = (n.world.world.b["alice"].clone(), n.world.world.b["bob"].clone());

    let directory = n.directory();
    directory.add_member(TENANT_A, &n.world.world.group_a, &frank_a);
    directory.remove_member(TENANT_A, &n.world.world.group_a, &n.world.world.a["alice"]);
    directory.remove_member(TENANT_B, &n.world.world.group_b, &bob_b);

    n.shim
        .settle("every change applied", SETTLE, || {
            n.values(&frank_b) == ["X509:<S>CN=frank"]
                && n.values(&alice_b).is_empty()
                && n.values(&bob_b) == [ADMIN_VALUE]
        })
        .await;
    let history = n.shim.history();
    assert!(history.len() >= 6, "every delivery came twice: {history:#?}");
    let writes_before = user_writes(&n.world).len();
    assert_eq!(writes_before, 3, "each user was written once despite the duplicates");

    // Replay everything, newest first.
    n.directory().clear_requests();
    let done = successes(&n.shim);
    for message in history.iter().rev() {
        n.shim.enqueue(message);
    }
    n.shim.settle("the replay", SETTLE, || successes(&n.shim) >= done + history.len()).await;

    assert_eq!(user_writes(&n.world).len(), 0, "a replay writes nothing");
    let requests = graph_requests(&n.world);
    assert_eq!(requests.len(), history.len(), "each replayed notification costs one delta request: {requests:#?}");
    assert!(requests.iter().all(|r| r.path.contains("/groups/delta")));
    assert_eq!(n.values(&frank_b), ["X509:<S>CN=frank"]);
    assert!(n.values(&alice_b).is_empty());
    assert_eq!(n.values(&bob_b), [ADMIN_VALUE]);
    assert!(n.shim.poison().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_delta_token_falls_back_to_a_full_sync_of_the_pair_then_deltas_resume() {
    let n = Notified::start().await;
    let (frank_a, frank_b) = seed_frank(&n.world);
    n.warm_up().await;
    n.directory().expire_delta_tokens(TENANT_A);

    n.directory().add_member(TENANT_A, &n.world.world.group_a, &frank_a);

    n.converge(&frank_b, &["X509:<S>CN=frank"]).await;
    let scope = last_scope(&n.shim);
    assert!(scope["fullResync"].as_str().is_some_and(|r| r.contains("expired")), "{scope}");
    let gone: Vec<RequestRecord> =
        graph_requests(&n.world).into_iter().filter(|r| r.path.contains("/groups/delta") && r.status == 410).collect();
    assert_eq!(gone.len(), 1, "Graph answered 410 Gone once");
    assert!(
        graph_requests(&n.world).iter().any(|r| r.path.contains("/members/microsoft.graph.user")),
        "the pair's members were read in full"
    );

    // The fresh token works: the next change is incremental again.
    n.directory().clear_requests();
    let alice_b = n.world.world.b["alice"].clone();
    n.directory().remove_member(TENANT_A, &n.world.world.group_a, &n.world.world.a["alice"]);
    n.converge(&alice_b, &[]).await;
    assert_eq!(last_scope(&n.shim)["fullResync"], Value::Null);
    assert_eq!(delta_reads(&n.world, TENANT_A), 1);
}

/// `certsync subscriptions --json`, awaited without blocking the runtime (the handshake goes through the shim).
async fn run_cli(env: &HashMap<String, String>) -> (i32, Value, Output) {
    let (mut child, output) = spawn_binary(&["subscriptions", "--json"], env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the process") {
            break status;
        }
        assert!(Instant::now() < deadline, "certsync subscriptions did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The pipes are read by threads: wait for the JSON document to be complete.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(json) = serde_json::from_str::<Value>(&json_part(&output.stdout())) {
            return (status.code().unwrap_or(-1), json, output);
        }
        assert!(Instant::now() < deadline, "no JSON on stdout:\n{}\n{}", output.stdout(), output.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// stdout also carries log lines: the JSON document starts at the first line that is exactly `{`.
fn json_part(stdout: &str) -> String {
    match stdout.find("\n{\n").map(|i| i + 1).or_else(|| stdout.starts_with("{\n").then_some(0)) {
        Some(start) => stdout[start..].to_owned(),
        None => String::new(),
    }
}

fn subscription_of(tenant: &str, n: &Notified) -> graph_emulator::SubscriptionRecord {
    let mut subscriptions = n.directory().subscriptions(tenant);
    assert_eq!(subscriptions.len(), 1, "{subscriptions:#?}");
    subscriptions.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_are_created_reauthorized_renewed_recreated_and_adopted() {
    let n = Notified::start().await;
    let env = &n.world.env;

    // Create: both tenants, through the emulator's real validation handshake (notification and lifecycle URL).
    let (code, out, output) = run_cli(env).await;
    assert_eq!(code, 0, "{out}\n{}", output.stderr());
    let created = subscription_of(TENANT_B, &n);
    let group_a = subscription_of(TENANT_A, &n);
    assert_eq!(group_a.resource, format!("/groups/{}", n.world.world.group_a));
    assert_eq!(created.resource, format!("/groups/{}", n.world.world.group_b));
    assert_eq!(created.change_type, "updated");
    assert_eq!(created.notification_url, n.shim.notification_url());
    assert_eq!(created.lifecycle_notification_url.as_deref(), Some(n.shim.notification_url().as_str()));
    assert_eq!(created.client_state.as_deref(), Some("test-client-state"));
    let lifetime = created.expiration_date_time - n.directory().now();
    assert!(lifetime > time::Duration::days(28) && lifetime <= time::Duration::minutes(41_760), "{lifetime}");
    assert_eq!(out["subscriptions"].as_array().unwrap().len(), 2, "{out}");
    assert!(n.shim.webhook_posts() >= 4, "two handshakes per subscription");
    assert!(!output.stdout().contains(FUNCTION_KEY), "the function key is never printed");

    // A reauthorizationRequired lifecycle event, more than 10 minutes after the creation, reauthorizes…
    n.directory().advance_clock(Duration::from_secs(11 * 60));
    n.directory().trigger_lifecycle_event(TENANT_B, &created.id, "reauthorizationRequired");
    let reauthorize = format!("/subscriptions/{}/reauthorize", created.id);
    let reauthorized = || graph_requests(&n.world).iter().filter(|r| r.path.ends_with(&reauthorize)).count();
    n.shim.settle("the reauthorization", SETTLE, || reauthorized() == 1).await;
    // …and a second one at once does not (Graph refuses two actions within 10 minutes).
    let done = successes(&n.shim);
    n.directory().trigger_lifecycle_event(TENANT_B, &created.id, "reauthorizationRequired");
    n.shim.settle("the second lifecycle event", SETTLE, || successes(&n.shim) > done).await;
    assert_eq!(reauthorized(), 1);
    assert!(n.shim.invocations().last().unwrap().reply["Logs"].to_string().contains("AlreadyDone"));

    // Renew: 27 days later less than 3 days remain.
    n.directory().advance_clock(Duration::from_secs(27 * 24 * 3600));
    let (code, out, _) = run_cli(env).await;
    assert_eq!(code, 0, "{out}");
    let renewed = subscription_of(TENANT_B, &n);
    assert_eq!(renewed.id, created.id);
    assert!(
        renewed.expiration_date_time - n.directory().now() > time::Duration::days(28),
        "renewed from Graph's clock"
    );
    assert!(out["actions"].to_string().contains("renewed"), "{out}");

    // Recreate: Graph dropped it silently (groups get no subscriptionRemoved event).
    assert!(n.directory().delete_subscription(TENANT_B, &created.id));
    let (code, out, _) = run_cli(env).await;
    assert_eq!(code, 0, "{out}");
    let recreated = subscription_of(TENANT_B, &n);
    assert_ne!(recreated.id, created.id);
    assert!(out["actions"].to_string().contains("Graph no longer knew it"), "{out}");

    // Adopt: the records are lost (a new storage account, a second deployment); create answers 409.
    let store = state_store(&n.world).await;
    store
        .put(
            &format!("subscriptions/{TENANT_B}.json"),
            br#"{"schemaVersion":1,"subscriptions":{}}"#.to_vec(),
            "application/json",
        )
        .await
        .unwrap();
    let (code, out, _) = run_cli(env).await;
    assert_eq!(code, 0, "{out}");
    assert!(out["actions"].to_string().contains("409"), "{out}");
    assert_eq!(subscription_of(TENANT_B, &n).id, recreated.id, "adopted, not duplicated");
    let recorded =
        out["subscriptions"].as_array().unwrap().iter().any(|s| s["subscription"]["id"] == recreated.id.as_str());
    assert!(recorded, "{out}");
    let conflicts =
        graph_requests(&n.world).iter().filter(|r| r.path.ends_with("/subscriptions") && r.status == 409).count();
    assert_eq!(conflicts, 1);
}

async fn state_store(world: &World) -> AzureBlobStore {
    let connection = StorageConnection::ConnectionString(world.azurite.connection_string().into());
    AzureBlobStore::connect(&connection, None, "certsync-state").await.expect("connect to Azurite")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_handshake_echoes_tokens_with_spaces_plus_slashes_and_unicode_through_the_host() {
    let n = Notified::start().await;
    let client = reqwest::Client::new();
    for token in [
        "Validation: Testing client application reachability for subscription Request-Id: 7a1f0b2c",
        "a+b/c=d&e",
        "literal %2F and %20 stay as they are",
        "ünï cödé ✓ 日本",
    ] {
        // Graph form-encodes the token into the query string (spaces as `+`), after the URL's own `code`.
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("code", FUNCTION_KEY)
            .append_pair("validationToken", token)
            .finish();
        let response = client.post(format!("{}/api/function-webhook?{query}", n.shim.base_url())).send().await.unwrap();
        assert_eq!(response.status(), 200, "{token}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert_eq!(response.text().await.unwrap(), token);
    }
    // Without the function key the host refuses before the handler sees anything.
    let response =
        client.post(format!("{}/api/function-webhook?validationToken=x", n.shim.base_url())).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_for_an_unknown_subscription_is_dropped_by_the_worker_with_a_security_log() {
    let n = Notified::start().await;
    n.run_timer().await;
    n.directory().clear_requests();
    let forged = json!({"value": [{
        "subscriptionId": uuid::Uuid::new_v4().to_string(), "clientState": "test-client-state", "changeType": "updated",
        "resource": format!("Groups/{}", n.world.world.group_a), "tenantId": TENANT_A,
        "resourceData": {"@odata.type": "#Microsoft.Graph.Group", "id": n.world.world.group_a},
    }]});
    let response = reqwest::Client::new().post(n.shim.notification_url()).json(&forged).send().await.unwrap();
    assert_eq!(response.status(), 202, "accepted and queued: the webhook does no I/O");

    n.shim.settle("the worker", SETTLE, || n.shim.invocations().len() == 1).await;
    let invocation = &n.shim.invocations()[0];
    assert_eq!(invocation.status, 200, "never retried: {:?}", invocation.reply);
    assert!(invocation.reply["Logs"].to_string().contains("not one of ours"), "{:?}", invocation.reply);
    assert!(graph_requests(&n.world).is_empty(), "nothing was read for it");
    let stdout = n.app.wait_for_stdout("unknown subscription (security)").await;
    assert!(stdout.contains("unknown subscription (security)"), "{}", n.app.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_that_keeps_failing_is_retried_then_poisoned_and_a_replay_catches_up() {
    let n = Notified::start().await;
    let (frank_a, frank_b) = seed_frank(&n.world);
    n.warm_up().await;
    n.world.emulator.set_faults(Faults { error_rate: 1.0, kinds: vec![FaultKind::Internal500], ..Faults::default() });

    n.directory().add_member(TENANT_A, &n.world.world.group_a, &frank_a);

    n.shim.settle("the poison queue", SETTLE, || n.shim.poison().len() == 1).await;
    let attempts: Vec<_> = n.shim.invocations().into_iter().filter(|i| i.status != 200).collect();
    assert_eq!(attempts.len() as u64, MAX_DEQUEUE_COUNT, "{attempts:#?}");
    assert!(attempts.iter().all(|i| i.status == 500));
    let counts: Vec<u64> = attempts.iter().map(|i| i.dequeue_count).collect();
    assert_eq!(counts, [1, 2, 3, 4, 5], "the host's DequeueCount grows with each attempt");
    assert!(attempts.iter().all(|i| i.message == n.shim.poison()[0].text));
    let last = attempts.last().unwrap().reply["Logs"].to_string();
    assert!(last.contains("graph-notifications-poison"), "{last}");
    assert!(n.values(&frank_b).is_empty());

    // Graph is back; the poisoned message replayed by an operator (or the next notification) catches up.
    n.world.emulator.set_faults(Faults::default());
    n.shim.enqueue(&n.shim.poison()[0].text);
    n.converge(&frank_b, &["X509:<S>CN=frank"]).await;
}

#[tokio::test]
async fn a_malformed_queue_message_is_answered_200_and_logged_so_it_is_not_retried() {
    let world = World::start().await;
    let app = TestApp::spawn(&world.env).await;
    for text in ["not json", "42", r#"{"unexpected": true}"#] {
        let dequeued = Dequeued { id: "m1", dequeue_count: 1, inserted: time::OffsetDateTime::now_utc() };
        let envelope = queue_trigger_envelope("function-notifications", "message", text, &dequeued);
        let (status, _, reply) = app.invoke("function-notifications", &envelope).await;
        assert_eq!(status, 200, "{reply}");
        assert!(reply["Logs"][0].as_str().unwrap().contains("malformed"), "{reply}");
    }
    let stdout = app.wait_for_stdout("\"malformed_total\":3").await;
    assert!(stdout.contains("\"malformed_total\":3"), "{stdout}");
}

/// `cargo nextest run --test api --run-ignored only measure` (or `cargo test --test api -- --ignored measure
/// --nocapture`): prints the webhook's acknowledgement latency under a burst, and the time from a membership change
/// to the converged value in Tenant B through the shim.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
#[ignore = "a measurement, not a test: run it on demand"]
async fn measure_webhook_ack_latency_and_change_to_convergence() {
    let n = Notified::start().await;

    // 1. A burst of 1,000 notifications POSTed straight to the binary's webhook, 50 at a time.
    let body = |i: usize| {
        json!({"value": [{"subscriptionId": format!("00000000-0000-4000-8000-{i:012}"), "clientState": "test-client-state",
            "changeType": "updated", "resource": format!("Groups/{}", n.world.world.group_a), "tenantId": TENANT_A,
            "resourceData": {"@odata.type": "#Microsoft.Graph.Group", "id": n.world.world.group_a}}]})
        .to_string()
    };
    let envelopes: Vec<String> = (0..1000)
        .map(|i| super::helpers::http_envelope(json!({"code": FUNCTION_KEY}), "application/json", &body(i)).to_string())
        .collect();
    let client = reqwest::Client::new();
    let url = n.app.url("/function-webhook");
    let started = Instant::now();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(50));
    let mut tasks = Vec::new();
    for envelope in envelopes {
        let (client, url, semaphore) = (client.clone(), url.clone(), semaphore.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await.unwrap();
            let sent = Instant::now();
            let response =
                client.post(&url).header("content-type", "application/json").body(envelope).send().await.unwrap();
            let status = response.status();
            let reply: Value = response.json().await.unwrap();
            assert!(status.is_success() && reply["Outputs"]["res"]["statusCode"] == "202", "{reply}");
            sent.elapsed()
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    let total = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "webhook ack, 1000 notifications at concurrency 50: p50 {:?}, p99 {:?}, max {:?}; {:.0} notifications/s",
        pct(0.50),
        pct(0.99),
        latencies.last().unwrap(),
        1000.0 / total.as_secs_f64()
    );

    // 2. Membership change in the emulator → converged value in Tenant B, through the shim and the queue.
    n.warm_up().await;
    let mut convergence = Vec::new();
    for i in 0..10 {
        let directory = n.directory();
        let b = directory.add_user(TENANT_B, NewUser::new(format!("m{i}@tenant-b.example")));
        directory.add_member(TENANT_B, &n.world.world.group_b, &b);
        let a = directory.add_user(TENANT_A, NewUser::new(format!("m{i}@tenant-a.example")));
        // Let the Tenant B change settle first so the measurement is one notification's path.
        n.shim.settle("the Tenant B change", SETTLE, || true).await;
        let started = Instant::now();
        directory.add_member(TENANT_A, &n.world.world.group_a, &a);
        let expected = format!("X509:<S>CN=m{i}");
        loop {
            if n.values(&b) == [expected.as_str()] {
                break;
            }
            assert!(started.elapsed() < SETTLE, "m{i} never converged");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        convergence.push(started.elapsed());
        n.shim.settle("the queue", SETTLE, || true).await;
    }
    convergence.sort();
    println!(
        "membership change → converged Tenant B value (emulator, shim queue, incremental run), 10 changes: p50 {:?}, max {:?}",
        convergence[4], convergence[9]
    );
}

/// The run lease held, as a long first sync holds it: the state container's lease blob, taken by the test.
async fn hold_the_run_lease(world: &World) -> certsync::sync::lease::RunLease {
    let connection = StorageConnection::ConnectionString(world.azurite.connection_string().into());
    let store: std::sync::Arc<dyn BlobStore> =
        std::sync::Arc::new(AzureBlobStore::connect(&connection, None, "certsync-state").await.expect("Azurite"));
    let blob = certsync::sync::ledger::lease_blob(&certsync::domain::TenantId::parse(TENANT_B).expect("a tenant id"));
    certsync::sync::lease::RunLease::take(&store, &blob, Duration::from_secs(20))
        .await
        .expect("Azurite answers")
        .expect("nobody holds the lease")
}

// Issue 19: during a long first sync every notification waited 10 s for the lease, failed, and after five attempts
// ended in the poison queue. Now it hands its group to the run holding the lease and is done; that run queues the
// group when it ends, and the change lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_during_a_long_run_is_handed_to_it_not_poisoned_and_lands_when_the_run_ends() {
    let n = Notified::start().await;
    let (frank_a, frank_b) = seed_frank(&n.world);
    n.warm_up().await;
    let before = n.shim.invocations().len();
    let lease = hold_the_run_lease(&n.world).await;

    n.directory().add_member(TENANT_A, &n.world.world.group_a, &frank_a);
    n.shim.settle("the notification handed on", SETTLE, || n.shim.invocations().len() > before).await;
    let handed: Vec<_> = n.shim.invocations().into_iter().skip(before).collect();
    assert!(handed.iter().all(|i| i.status == 200), "answered, not retried: {handed:#?}");
    assert!(handed.iter().any(|i| i.reply["Logs"].to_string().contains("handed to it")), "{handed:#?}");
    assert!(n.shim.poison().is_empty());
    assert!(n.values(&frank_b).is_empty(), "nothing is written while another run holds the lease");

    // The long run ends: it hands the group on through its followUps output, and the worker reconciles it.
    lease.release().await.expect("release the lease");
    let (status, _, reply) = n.app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!(status, 200, "{reply}");
    let follow_ups = reply["Outputs"]["followUps"].to_string();
    assert!(follow_ups.contains("changedGroups") && follow_ups.contains(&n.world.world.group_a), "{reply}");
    n.shim.take_outputs(status, &reply);
    n.converge(&frank_b, &["X509:<S>CN=frank"]).await;
    assert!(n.shim.poison().is_empty());
    // The record is consumed: the next run hands nothing on.
    let (_, _, again) = n.app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert!(again["Outputs"].get("followUps").is_none(), "{again}");
}

// Issue 20: a storm of notifications keeps the lease busy, and a timer run that met it was skipped with nothing to
// retry it. Now the timer hands its full sync to the run holding the lease, which queues it as a continuation when
// it ends; the full sync then repairs what only it can see (a value removed behind the tool's back).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timer_run_that_meets_a_held_lease_is_handed_to_the_holder_and_runs_when_it_ends() {
    let n = Notified::start().await;
    let (frank_a, frank_b) = seed_frank(&n.world);
    n.warm_up().await;
    let warmed = n.shim.invocations().len();
    // Drift only a full sync sees: the value the tool wrote is gone from a user (no notification covers that).
    let holder = n.directory().users(TENANT_B).into_iter().find(|u| !u.certificate_user_ids.is_empty());
    let holder = holder.expect("the warm-up wrote a value");
    n.directory().update_user(TENANT_B, &holder.id, |user| user.certificate_user_ids.clear());

    let lease = hold_the_run_lease(&n.world).await;
    let (status, _, reply) = n.app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!((status, reply["ReturnValue"]["outcome"].as_str()), (200, Some("skipped")), "{reply}");
    assert!(reply["Logs"].to_string().contains("handed to it"), "{reply}");
    assert!(n.directory().user(TENANT_B, &holder.id).unwrap().certificate_user_ids.is_empty());
    lease.release().await.expect("release the lease");

    // The next run to hold the lease (a notification's) queues the full sync when it ends; the worker runs it.
    n.directory().add_member(TENANT_A, &n.world.world.group_a, &frank_a);
    n.converge(&frank_b, &["X509:<S>CN=frank"]).await;
    let restored =
        || n.directory().user(TENANT_B, &holder.id).unwrap().certificate_user_ids == holder.certificate_user_ids;
    n.shim.settle("the handed-on full sync", SETTLE, restored).await;
    let after: Vec<_> = n.shim.invocations().into_iter().skip(warmed).collect();
    let queued_by = after.iter().filter(|i| i.reply["Logs"].to_string().contains("Queued the full sync that was due"));
    assert_eq!(queued_by.count(), 1, "one run hands the full sync on: {after:#?}");
    assert!(after.iter().all(|i| i.status == 200), "{after:#?}");
    assert!(n.shim.poison().is_empty());
}

// Issue 20: every message took the tenant lease before its delta check and wrote two run-log blobs even when nothing
// changed, so a storm of duplicates held the lease and filled the log container. Now the delta check comes first: a
// notification that finds no change runs while another holds the lease, writes no blob, and is counted in the next
// run's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_that_finds_no_change_takes_no_lease_and_writes_no_blob() {
    let n = Notified::start().await;
    n.warm_up().await;
    let subscription = subscription_of(TENANT_B, &n);
    let message = json!({"subscriptionId": subscription.id, "tenantId": TENANT_B, "changeType": "updated",
        "groupId": n.world.world.group_b, "resource": format!("Groups/{}", n.world.world.group_b)});
    let logs_before = n.world.log_blobs().await.len();
    let lease = hold_the_run_lease(&n.world).await;
    for attempt in 1..=3 {
        let dequeued = Dequeued { id: "quiet", dequeue_count: 1, inserted: time::OffsetDateTime::now_utc() };
        let envelope = queue_trigger_envelope("function-notifications", "message", &message.to_string(), &dequeued);
        let started = Instant::now();
        let (status, _, reply) = n.app.invoke("function-notifications", &envelope).await;
        assert_eq!((status, reply["ReturnValue"]["outcome"].as_str()), (200, Some("succeeded")), "{reply}");
        assert!(started.elapsed() < Duration::from_secs(5), "attempt {attempt} waited for the lease: {reply}");
        assert!(!reply["Logs"].to_string().contains("handed to it"), "{reply}");
    }
    assert_eq!(n.world.log_blobs().await.len(), logs_before, "a run that found no change writes no log");
    lease.release().await.expect("release the lease");

    // The next run that writes a log says how many went before it.
    let reply = n.run_timer().await;
    let blob = reply["ReturnValue"]["logBlob"].as_str().expect("the timer's log").to_owned();
    let text = n.world.log_store().await.get(blob.trim_start_matches("cert-auth/")).await.unwrap().unwrap().bytes;
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("3 notification run(s) before this one found no membership change"), "{text}");
}

// Issue 19: a first sync that cannot finish before functionTimeout stops at its soft deadline, reports `continued`
// with what is left, and queues a continuation; each continuation does the same until every user is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timer_run_past_its_soft_deadline_continues_through_the_queue_until_every_user_is_written() {
    let mut world =
        World::start_with(EmulatorOptions { latency: Duration::from_millis(100), ..EmulatorOptions::default() }).await;
    let directory = world.emulator.directory();
    let mut bulk_b = Vec::new();
    for i in 0..400 {
        let a = directory.add_user(TENANT_A, NewUser::new(format!("bulk{i:03}@tenant-a.example")));
        directory.add_member(TENANT_A, &world.world.group_a, &a);
        let b = directory.add_user(TENANT_B, NewUser::new(format!("bulk{i:03}@tenant-b.example")));
        directory.add_member(TENANT_B, &world.world.group_b, &b);
        bulk_b.push((i, b));
    }
    // 0.3 s: each run writes its first chunks, then hands the rest on.
    world.env.insert("SYNC_SOFT_DEADLINE_MINUTES".into(), "0.005".into());
    let shim = HostShim::bind(FUNCTION_KEY).await;
    let app = TestApp::spawn(&world.env).await;
    shim.connect(app.port);

    let (status, _, reply) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!((status, reply["ReturnValue"]["outcome"].as_str()), (200, Some("continued")), "{reply}");
    assert!(reply["Logs"].to_string().contains("Queued continuation 1"), "{reply}");
    shim.take_outputs(status, &reply);
    let done = || {
        bulk_b.iter().all(|(i, b)| {
            directory.user(TENANT_B, b).map(|u| u.certificate_user_ids) == Some(vec![format!("X509:<S>CN=bulk{i:03}")])
        })
    };
    shim.settle("the continuations", Duration::from_secs(120), done).await;

    let invocations = shim.invocations();
    assert!(invocations.iter().all(|i| i.status == 200), "{invocations:#?}");
    let outcomes: Vec<&str> = invocations.iter().filter_map(|i| i.reply["ReturnValue"]["outcome"].as_str()).collect();
    assert!(outcomes.len() >= 2 && outcomes[..outcomes.len() - 1].iter().all(|o| *o == "continued"), "{outcomes:?}");
    assert_eq!(outcomes.last(), Some(&"succeeded"), "the last continuation finishes: {outcomes:?}");
    assert!(shim.poison().is_empty());
    // Nothing is left: a further run writes nothing.
    world.emulator.directory().clear_requests();
    let (_, _, again) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!(again["ReturnValue"]["outcome"], "succeeded", "{again}");
    let writes = world.emulator.directory().requests().iter().filter(|r| r.kind == RequestKind::Write).count();
    assert_eq!(writes, 0, "{again}");
}

/// Under `DRY_RUN` nothing writes a subscription (issue 20): a lifecycle event is answered and logged as not acted
/// on, with no reauthorization sent to Graph, and `certsync subscriptions` refuses, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_dry_run_no_lifecycle_event_or_cli_call_writes_a_subscription() {
    let mut world = World::start().await;
    grant_subscription_permission(&world);
    let shim = HostShim::bind(FUNCTION_KEY).await;
    world.env.insert("WEBHOOK_NOTIFICATION_URL".into(), shim.notification_url());
    let mut dry = world.env.clone();
    dry.insert("DRY_RUN".into(), "true".into());
    let app = TestApp::spawn(&dry).await;
    shim.connect(app.port);
    let n = Notified { world, shim, app };
    // The subscriptions exist: made by a writing configuration.
    let mut writing = n.world.env.clone();
    writing.insert("DRY_RUN".into(), "false".into());
    let (code, out, _) = run_cli(&writing).await;
    assert_eq!(code, 0, "{out}");
    let created = subscription_of(TENANT_B, &n);
    n.directory().clear_requests();

    let (code, out, _) = run_cli(&dry).await;
    assert_eq!(code, 1, "{out}");
    assert!(out["problems"].to_string().contains("DRY_RUN is set"), "{out}");

    n.directory().advance_clock(Duration::from_secs(11 * 60));
    n.directory().trigger_lifecycle_event(TENANT_B, &created.id, "reauthorizationRequired");
    n.shim.settle("the lifecycle event", SETTLE, || successes(&n.shim) >= 1).await;
    let logs = n.shim.invocations().last().unwrap().reply["Logs"].to_string();
    assert!(logs.contains("DRY_RUN is set"), "{logs}");
    let writes: Vec<_> = graph_requests(&n.world).into_iter().filter(|r| r.path.contains("/subscriptions")).collect();
    assert!(writes.iter().all(|r| r.method == "GET"), "no subscription written under DRY_RUN: {writes:#?}");
    assert_eq!(subscription_of(TENANT_B, &n).id, created.id);
}
