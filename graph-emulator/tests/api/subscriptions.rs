//! Subscriptions and change notifications on groups.
//! [subscription-post-subscriptions] [change-notifications-delivery-webhooks] [change-notifications-lifecycle-events]

use std::time::Duration;

use graph_emulator::{AppRegistration, NewUser};
use serde_json::{Value, json};

use crate::helpers::*;

const WATCHER: &str = "88888888-0000-4000-8000-000000000008";

fn expiry_in(minutes: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn watcher_token(app: &TestApp) -> String {
    app.directory.add_app(
        TENANT_A,
        AppRegistration {
            client_id: WATCHER.into(),
            client_secret: Some("watch".into()),
            roles: vec!["Group.Read.All".into()],
            federated_credentials: vec![],
        },
    );
    app.token(TENANT_A, WATCHER, "watch").await
}

async fn subscribe(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client.post(app.graph("subscriptions")).bearer_auth(token).json(&body).send().await.unwrap()
}

// [subscription-post-subscriptions] the handshake, then a notification per membership change, query string kept.
#[tokio::test]
async fn a_membership_change_is_notified_after_the_validation_handshake() {
    let app = spawn().await;
    let (hook, mut received) = webhook().await;
    let group = app.directory.add_group(TENANT_A, "g");
    let token = watcher_token(&app).await;
    let notification_url = format!("{hook}hook?pair=a-b");
    let response = subscribe(
        &app,
        &token,
        json!({
            "changeType": "updated",
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": format!("{hook}lifecycle"),
            "resource": format!("/groups/{group}/members"),
            "expirationDateTime": expiry_in(60),
            "clientState": "secret-state",
        }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let subscription: Value = response.json().await.unwrap();
    let id = subscription["id"].as_str().unwrap().to_owned();

    let user = app.directory.add_user(TENANT_A, NewUser::new("u@a.example"));
    app.directory.add_member(TENANT_A, &group, &user);
    let (query, body) = tokio::time::timeout(Duration::from_secs(5), received.recv()).await.unwrap().unwrap();
    assert_eq!(query, "pair=a-b");
    let n = &body["value"][0];
    assert_eq!(n["subscriptionId"], id.as_str());
    assert_eq!(n["clientState"], "secret-state");
    assert_eq!(n["changeType"], "updated");
    assert_eq!(n["resource"], format!("Groups/{group}"));
    assert_eq!(n["tenantId"], TENANT_A);
    assert_eq!(n["resourceData"]["@odata.type"], "#Microsoft.Graph.Group");
    assert_eq!(n["resourceData"]["id"], group.as_str());

    // [change-notifications-lifecycle-events] groups get reauthorizationRequired.
    app.directory.trigger_lifecycle_event(TENANT_A, &id, "reauthorizationRequired");
    let (_, body) = tokio::time::timeout(Duration::from_secs(5), received.recv()).await.unwrap().unwrap();
    assert_eq!(body["value"][0]["lifecycleEvent"], "reauthorizationRequired");
    let reauthorize = app
        .client
        .post(app.graph(&format!("subscriptions/{id}/reauthorize")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(reauthorize.status(), 204);

    // Renew, then delete.
    let renewed = app
        .client
        .patch(app.graph(&format!("subscriptions/{id}")))
        .bearer_auth(&token)
        .json(&json!({"expirationDateTime": expiry_in(120)}))
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), 200);
    let deleted =
        app.client.delete(app.graph(&format!("subscriptions/{id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(app.directory.subscriptions(TENANT_A).is_empty());
}

// [subscription-post-subscriptions] duplicate → 409; clientState > 128, expiry > 41,760 min, failed handshake → 400.
#[tokio::test]
async fn subscription_rules() {
    let app = spawn().await;
    let (hook, _received) = webhook().await;
    let group = app.directory.add_group(TENANT_A, "g");
    let token = watcher_token(&app).await;
    let body = |url: String, state: String, minutes: i64| {
        json!({
            "changeType": "updated",
            "notificationUrl": url,
            "resource": format!("/groups/{group}"),
            "expirationDateTime": expiry_in(minutes),
            "clientState": state,
        })
    };
    let ok = format!("{hook}hook");
    assert_eq!(subscribe(&app, &token, body(ok.clone(), "s".into(), 60)).await.status(), 201);
    assert_eq!(subscribe(&app, &token, body(ok.clone(), "s".into(), 60)).await.status(), 409);
    app.directory.add_group(TENANT_A, "other");
    let cases = [
        (body(ok.clone(), "x".repeat(129), 60), "clientState over 128"),
        (body(ok.clone(), "s".into(), 41_761), "expiry over 41,760 minutes"),
        (body(format!("{hook}refuse"), "s".into(), 60), "failed handshake"),
    ];
    for (mut b, what) in cases {
        b["changeType"] = json!("deleted");
        assert_eq!(subscribe(&app, &token, b).await.status(), 400, "{what}");
    }
    // Without Group.Read.All: 403.
    let reader = app.reader_token().await;
    assert_eq!(subscribe(&app, &reader, body(ok, "s".into(), 60)).await.status(), 403);
}
