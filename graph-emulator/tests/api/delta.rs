//! Group delta query. [group-delta] [delta-query-groups] [delta-query-overview]

use graph_emulator::{DeltaExpiry, NewUser};
use serde_json::Value;

use crate::helpers::*;

/// Follows nextLinks to the deltaLink; returns (members@delta per group merged, pages, deltaLink).
async fn sync(app: &TestApp, token: &str, first: &str) -> (Vec<(String, Value)>, usize, String) {
    let mut url = first.to_owned();
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let response = app.client.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let page: Value = response.json().await.unwrap();
        pages += 1;
        for group in page["value"].as_array().unwrap() {
            for member in group["members@delta"].as_array().cloned().unwrap_or_default() {
                out.push((group["id"].as_str().unwrap().to_owned(), member));
            }
        }
        if let Some(next) = page["@odata.nextLink"].as_str() {
            url = next.to_owned();
        } else {
            return (out, pages, page["@odata.deltaLink"].as_str().expect("deltaLink").to_owned());
        }
    }
}

// [delta-query-groups] full sync over pages, then only the changes: added, and removed with @removed.
#[tokio::test]
async fn full_sync_then_changes_with_removed_members() {
    let app = spawn().await;
    let big = app.directory.add_group(TENANT_A, "big");
    let small = app.directory.add_group(TENANT_A, "small");
    let users: Vec<String> =
        (0..250).map(|n| app.directory.add_user(TENANT_A, NewUser::new(format!("u{n}@a.example")))).collect();
    app.directory.add_members(TENANT_A, &big, &users);
    app.directory.add_member(TENANT_A, &small, &users[0]);
    let token = app.reader_token().await;
    let first = app.graph(&format!("groups/delta?$filter=id eq '{big}' or id eq '{small}'&$select=members"));
    let (members, pages, delta_link) = sync(&app, &token, &first).await;
    assert_eq!(members.len(), 251);
    assert!(pages >= 2, "a large group is split across pages");
    assert!(members.iter().all(|(_, m)| m.get("@removed").is_none()));

    app.directory.remove_member(TENANT_A, &big, &users[1]);
    let newcomer = app.directory.add_user(TENANT_A, NewUser::new("new@a.example"));
    app.directory.add_member(TENANT_A, &small, &newcomer);
    let (changes, _, next_delta) = sync(&app, &token, &delta_link).await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    let removed = changes.iter().find(|(g, _)| *g == big).unwrap();
    assert_eq!(removed.1["id"], users[1].as_str());
    assert_eq!(removed.1["@removed"]["reason"], "deleted");
    let added = changes.iter().find(|(g, _)| *g == small).unwrap();
    assert_eq!(added.1["id"], newcomer.as_str());
    assert_eq!(added.1["@odata.type"], "#microsoft.graph.user");

    let (nothing, pages, _) = sync(&app, &token, &next_delta).await;
    assert!(nothing.is_empty() && pages == 1, "an empty page with a deltaLink: no changes");
}

// [delta-query-overview] $deltatoken=latest gives a deltaLink and no data.
#[tokio::test]
async fn deltatoken_latest_starts_from_now() {
    let app = spawn().await;
    let group = app.directory.add_group(TENANT_A, "g");
    let user = app.directory.add_user(TENANT_A, NewUser::new("u@a.example"));
    app.directory.add_member(TENANT_A, &group, &user);
    let token = app.reader_token().await;
    let first = app.graph(&format!("groups/delta?$filter=id eq '{group}'&$select=members&$deltatoken=latest"));
    let page: Value = app.client.get(&first).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["value"], serde_json::json!([]));
    let delta_link = page["@odata.deltaLink"].as_str().unwrap().to_owned();
    let (changes, ..) = sync(&app, &token, &delta_link).await;
    assert!(changes.is_empty());
}

// [delta-query-overview] an expired token: 410 Gone with Location, or a 400 syncStateNotFound / resyncRequired.
#[tokio::test]
async fn expired_delta_tokens_ask_for_a_full_sync() {
    let app = spawn().await;
    let group = app.directory.add_group(TENANT_A, "g");
    let token = app.reader_token().await;
    let first = app.graph(&format!("groups/delta?$filter=id eq '{group}'&$select=members"));
    let (_, _, delta_link) = sync(&app, &token, &first).await;
    app.directory.expire_delta_tokens(TENANT_A);
    let response = app.client.get(&delta_link).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 410);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("groups/delta?"), "{location}");
    let (restart, ..) = sync(&app, &token, &location).await;
    assert!(restart.is_empty());

    for (expiry, code) in
        [(DeltaExpiry::SyncStateNotFound, "syncStateNotFound"), (DeltaExpiry::ResyncRequired, "resyncRequired")]
    {
        app.directory.set_delta_expiry(expiry);
        let response = app.client.get(&delta_link).bearer_auth(&token).send().await.unwrap();
        let (status, actual, _) = error_code(response).await;
        assert_eq!((status, actual.as_str()), (400, code));
    }
}

// [group-delta] at most 50 ids in the filter.
#[tokio::test]
async fn more_than_50_ids_is_refused() {
    let app = spawn().await;
    let token = app.reader_token().await;
    let filter: Vec<String> = (0..51).map(|n| format!("id eq '{n}'")).collect();
    let response = app.get(&token, &format!("groups/delta?$filter={}&$select=members", filter.join(" or "))).await;
    assert_eq!(response.status(), 400);
}
