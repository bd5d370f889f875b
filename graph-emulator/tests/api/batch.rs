//! JSON batching. [json-batching]

use graph_emulator::{EmulatorOptions, NewUser, Throttling};
use serde_json::{Value, json};

use crate::helpers::*;

async fn batch(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client.post(app.graph("$batch")).bearer_auth(token).json(&body).send().await.expect("batch answers")
}

fn gets(n: usize, url: &str) -> Vec<Value> {
    (0..n).map(|i| json!({"id": (i + 1).to_string(), "method": "GET", "url": url})).collect()
}

// [json-batching] at most 20 requests; more is a 400 for the whole batch.
#[tokio::test]
async fn more_than_20_requests_is_a_400() {
    let app = spawn().await;
    let token = app.writer_token().await;
    let response = batch(&app, &token, json!({"requests": gets(21, "/users")})).await;
    assert_eq!(response.status(), 400);
    let response = batch(&app, &token, json!({"requests": gets(20, "/users")})).await;
    assert_eq!(response.status(), 200);
}

// [json-batching] duplicate ids are a 400 for the whole batch.
#[tokio::test]
async fn duplicate_ids_are_a_400() {
    let app = spawn().await;
    let token = app.writer_token().await;
    let mut requests = gets(2, "/users");
    requests[1]["id"] = json!("1");
    assert_eq!(batch(&app, &token, json!({ "requests": requests })).await.status(), 400);
}

// [json-batching] a request with a body needs Content-Type: that item alone fails; responses come in any order.
#[tokio::test]
async fn an_item_with_a_body_needs_a_content_type_and_order_is_not_kept() {
    let app = spawn().await;
    let user = app.directory.add_user(TENANT_B, NewUser::new("u@b.example"));
    let token = app.writer_token().await;
    let patch = json!({"authorizationInfo": {"certificateUserIds": ["X509:<PN>u@b.example"]}});
    let body = json!({"requests": [
        {"id": "1", "method": "PATCH", "url": format!("/users/{user}"), "body": patch},
        {"id": "2", "method": "PATCH", "url": format!("/users/{user}"), "body": patch,
         "headers": {"Content-Type": "application/json"}},
        {"id": "3", "method": "GET", "url": format!("/users/{user}?$select=id,authorizationInfo")},
    ]});
    let response = batch(&app, &token, body).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let responses = body["responses"].as_array().unwrap();
    let ids: Vec<&str> = responses.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_ne!(ids, ["1", "2", "3"], "Graph does not keep the request order");
    let status = |id: &str| responses.iter().find(|r| r["id"] == id).unwrap()["status"].as_u64().unwrap();
    assert_eq!((status("1"), status("2"), status("3")), (400, 204, 200));
    assert_eq!(app.directory.user(TENANT_B, &user).unwrap().certificate_user_ids, ["X509:<PN>u@b.example"]);
}

// [json-batching] [throttling] each item is throttled on its own, with its own Retry-After.
#[tokio::test]
async fn items_are_throttled_one_by_one() {
    let app = spawn_with(EmulatorOptions {
        throttling: Throttling::Custom { resource_units_per_10s: 5, writes_per_150s: 100 },
        ..EmulatorOptions::default()
    })
    .await;
    let user = app.directory.add_user(TENANT_B, NewUser::new("u@b.example"));
    let token = app.writer_token().await;
    let response = batch(&app, &token, json!({"requests": gets(8, &format!("/users/{user}"))})).await;
    assert_eq!(response.status(), 200, "the outer 200 says nothing about the items");
    let body: Value = response.json().await.unwrap();
    let responses = body["responses"].as_array().unwrap();
    let ok = responses.iter().filter(|r| r["status"] == 200).count();
    let throttled: Vec<&Value> = responses.iter().filter(|r| r["status"] == 429).collect();
    assert_eq!((ok, throttled.len()), (5, 3));
    for item in throttled {
        assert!(item["headers"]["Retry-After"].as_str().unwrap().parse::<u64>().unwrap() >= 1, "{item}");
        assert_eq!(item["body"]["error"]["code"], "TooManyRequests");
    }
    let logged = app.directory.requests();
    assert_eq!(logged.iter().filter(|r| r.via_batch).count(), 8);
    assert!(logged.iter().any(|r| r.batch_items == Some(8)));
}
