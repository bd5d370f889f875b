//! The custom-handler protocol (shared/docs/functions.md), as the host speaks it.

use serde_json::{Value, json};

use super::functions_host::HostLogLevel;
use super::helpers::{TestApp, World, http_envelope, timer_envelope};

fn assert_envelope_reply(content_type: &str, reply: &Value) {
    assert!(content_type.starts_with("application/json"), "Content-Type {content_type}");
    let object = reply.as_object().expect("the reply is a JSON object");
    for key in ["Outputs", "Logs", "ReturnValue"] {
        assert!(object.contains_key(key), "{key} missing from {reply}");
    }
    assert!(reply["Outputs"].is_object() && reply["Logs"].is_array());
}

#[tokio::test]
async fn a_timer_invocation_with_null_schedule_status_runs_the_sync_and_answers_the_envelope() {
    let world = World::start().await;
    let app = TestApp::spawn(&world.env).await;

    let (status, content_type, reply) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;

    assert_eq!(status, 200, "{reply}\n{}", app.output());
    assert_envelope_reply(&content_type, &reply);
    assert_eq!(reply["ReturnValue"]["outcome"], "succeeded", "{reply}");
    assert_eq!(reply["ReturnValue"]["counts"]["usersChanged"], 2, "{reply}");
    assert!(reply["Logs"][0].as_str().unwrap().contains("2 users changed"), "{reply}");
    assert_eq!(world.values_of("alice"), ["X509:<S>CN=alice"]);
}

#[tokio::test]
async fn a_past_due_timer_with_dotnet_timestamps_runs_once_and_says_so() {
    let world = World::start().await;
    let app = TestApp::spawn(&world.env).await;
    let status = json!({"Last": "0001-01-01T00:00:00", "Next": "2026-11-22T14:00:00+00:00", "LastUpdated": "2026-11-22T09:59:59.9999999"});

    let (code, content_type, reply) = app.invoke("function-cert-sync", &timer_envelope(status, true)).await;

    assert_eq!(code, 200, "{reply}");
    assert_envelope_reply(&content_type, &reply);
    assert!(reply["Logs"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("past due")), "{reply}");
}

#[tokio::test]
async fn a_body_that_is_not_an_envelope_fails_the_invocation_with_the_reason_in_logs() {
    let world = World::start().await;
    let app = TestApp::spawn(&world.env).await;

    let (status, reply) = app.invoke_raw("function-cert-sync", "this is not json").await;
    assert_eq!(status, 400);
    assert!(reply["Logs"][0].as_str().unwrap().contains("not the Functions envelope JSON"), "{reply}");

    let (status, _, reply) = app.invoke("function-cert-sync", &json!({"Data": {}, "Metadata": {}})).await;
    assert_eq!(status, 400);
    assert_eq!(reply["Logs"][0], "the invocation has no trigger payload under Data.timer");
}

#[tokio::test]
async fn the_webhook_answers_the_validation_handshake_with_the_decoded_token_as_plain_text() {
    let world = World::start().await;
    let app = TestApp::spawn(&world.env).await;
    let token = "Validation: Testing client application reachability for subscription Request-Id: 7a1f+b/c%2F ü";

    let (status, content_type, reply) =
        app.invoke("function-webhook", &http_envelope(json!({"validationToken": token}), "text/plain", "")).await;

    assert_eq!(status, 200);
    assert_envelope_reply(&content_type, &reply);
    let res = &reply["Outputs"]["res"];
    assert_eq!(res["statusCode"], "200");
    assert_eq!(res["body"], token);
    assert!(res["headers"]["Content-Type"].as_str().unwrap().starts_with("text/plain"));
}

#[tokio::test]
async fn the_webhook_queues_notifications_with_the_right_client_state_and_drops_the_rest() {
    let world = World::start().await;
    let app = TestApp::spawn(&world.env).await;
    let notification = |client_state: &str| {
        json!({"subscriptionId": "6b1a4f60-0000-4000-8000-000000000001", "clientState": client_state, "changeType": "updated",
               "resource": format!("Groups/{}", world.world.group_a), "tenantId": certsync::demo::TENANT_A,
               "resourceData": {"@odata.type": "#Microsoft.Graph.Group", "@odata.id": format!("Groups/{}", world.world.group_a), "id": world.world.group_a}})
    };
    let body = json!({"value": [notification("test-client-state"), notification("forged")]}).to_string();

    let (status, _, reply) =
        app.invoke("function-webhook", &http_envelope(json!({}), "application/json; charset=utf-8", &body)).await;

    assert_eq!(status, 200);
    assert_eq!(reply["Outputs"]["res"]["statusCode"], "202");
    let queued = reply["Outputs"]["notifications"].as_array().expect("a queue output");
    assert_eq!(queued.len(), 1);
    assert!(queued[0].as_str().unwrap().contains(&world.world.group_a));
    let stdout = app.wait_for_stdout("clientState did not match").await;
    assert!(stdout.contains("clientState did not match"), "a security log line:\n{}", app.output());
}

#[tokio::test]
async fn malformed_notifications_get_a_400_response_not_a_crash() {
    let world = World::start().await;
    let app = TestApp::spawn(&world.env).await;
    for (content_type, body) in
        [("application/json", "{\"value\": "), ("application/xml", "<value/>"), ("application/json", "")]
    {
        let (status, _, reply) = app.invoke("function-webhook", &http_envelope(json!({}), content_type, body)).await;
        assert_eq!(status, 200, "{body:?}");
        assert_eq!(reply["Outputs"]["res"]["statusCode"], "400", "{body:?}: {reply}");
    }
    // Still serving.
    assert!(reqwest::get(app.url("/")).await.unwrap().status().is_success());
}

#[tokio::test]
async fn logs_go_to_stdout_as_json_with_the_invocation_id_and_never_to_stderr() {
    let world = World::start().await;
    let app = TestApp::spawn(&world.env).await;
    let (status, _, _) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!(status, 200);
    let stdout = app.wait_for_stdout("sync run finished").await;
    let line =
        stdout.lines().find(|l| l.contains("sync run finished")).unwrap_or_else(|| panic!("no run line:\n{stdout}"));
    let record: Value = serde_json::from_str(line).expect("JSON log line");
    let spans = record["spans"].as_array().expect("the span list");
    assert!(spans.iter().any(|s| s["invocation_id"].as_str().is_some_and(|id| id.len() == 36)), "{record}");
    let errors = app.output.host_log(HostLogLevel::Error);
    assert!(errors.is_empty(), "a successful run that the host logs as errors: {errors:#?}");
    for secret in [certsync::demo::SECRET_A, certsync::demo::SECRET_B, "test-client-state", super::azurite::KEY] {
        assert!(!stdout.contains(secret), "a secret reached the log");
    }
}

#[tokio::test]
async fn text_logs_under_the_host_carry_no_terminal_colours() {
    // The host stores each stdout line verbatim (`WorkerProcess.OnOutputDataReceived`): escape codes would reach
    // Application Insights. The handler's stdout is a pipe here, as it is under the host.
    let mut world = World::start().await;
    world.env.insert("LOG_FORMAT".into(), "text".into());
    let app = TestApp::spawn(&world.env).await;
    let (status, _, _) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!(status, 200);
    let stdout = app.wait_for_stdout("sync run finished").await;
    assert!(stdout.contains("sync run finished"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "an ANSI escape in the host's log: {stdout:.2000}");
}
