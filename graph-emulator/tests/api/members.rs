//! Group member listings. [group-list-members] [group-list-transitivemembers] [aad-advanced-queries] [paging]

use graph_emulator::NewUser;
use serde_json::Value;

use crate::helpers::*;

async fn json(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200, "status");
    response.json().await.expect("json")
}

// [group-list-members] [paging] $top=999 pages a 2,500-member group in 3 pages via absolute @odata.nextLink.
#[tokio::test]
async fn a_2500_member_group_pages_in_three_at_top_999() {
    let app = spawn().await;
    let group = app.directory.add_group(TENANT_A, "big");
    let ids: Vec<String> =
        (0..2500).map(|n| app.directory.add_user(TENANT_A, NewUser::new(format!("u{n}@a.example")))).collect();
    app.directory.add_members(TENANT_A, &group, &ids);
    let token = app.reader_token().await;

    let mut url = app.graph(&format!("groups/{group}/members?$top=999&$select=id,userPrincipalName"));
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    loop {
        let page = json(app.client.get(&url).bearer_auth(&token).send().await.unwrap()).await;
        let value = page["value"].as_array().expect("value");
        sizes.push(value.len());
        seen.extend(value.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        match page["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(app.emulator.https_url().as_str()), "absolute on the request's base: {next}");
                assert!(next.contains("$skiptoken="), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(sizes, vec![999, 999, 502]);
    assert_eq!(seen, ids, "every member once, in order");
}

// [group-list-members] default page size is 100; $top above 999 is refused.
#[tokio::test]
async fn default_page_is_100_and_top_over_999_is_refused() {
    let app = spawn().await;
    let group = app.directory.add_group(TENANT_A, "g");
    let ids: Vec<String> =
        (0..150).map(|n| app.directory.add_user(TENANT_A, NewUser::new(format!("u{n}@a.example")))).collect();
    app.directory.add_members(TENANT_A, &group, &ids);
    let token = app.reader_token().await;
    let page = json(app.get(&token, &format!("groups/{group}/members")).await).await;
    assert_eq!(page["value"].as_array().unwrap().len(), 100);
    assert!(page["@odata.nextLink"].is_string());
    let (status, _, message) = error_code(app.get(&token, &format!("groups/{group}/members?$top=1000")).await).await;
    assert_eq!(status, 400, "{message}");
}

fn mixed_group(app: &TestApp) -> (String, String, String) {
    let group = app.directory.add_group(TENANT_A, "mixed");
    let user = app
        .directory
        .add_user(TENANT_A, NewUser::new("alice@a.example").certificate_user_ids(["X509:<PN>alice@a.example"]));
    let device = app.directory.add_device(TENANT_A, "laptop");
    let nested = app.directory.add_group(TENANT_A, "nested");
    let sp = app.directory.add_service_principal(TENANT_A, "robot");
    let nested_user = app.directory.add_user(TENANT_A, NewUser::new("bob@a.example"));
    app.directory.add_member(TENANT_A, &group, &user);
    app.directory.add_member(TENANT_A, &group, &device);
    app.directory.add_member(TENANT_A, &group, &nested);
    app.directory.add_member(TENANT_A, &group, &sp);
    app.directory.add_member(TENANT_A, &nested, &nested_user);
    (group, user, nested_user)
}

// [group-list-members] members of every type carry their own @odata.type.
#[tokio::test]
async fn non_user_members_carry_their_own_odata_type() {
    let app = spawn().await;
    let (group, ..) = mixed_group(&app);
    let token = app.reader_token().await;
    let page = json(app.get(&token, &format!("groups/{group}/members")).await).await;
    let types: Vec<&str> =
        page["value"].as_array().unwrap().iter().map(|m| m["@odata.type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "#microsoft.graph.user",
            "#microsoft.graph.device",
            "#microsoft.graph.group",
            "#microsoft.graph.servicePrincipal"
        ]
    );
}

// [aad-advanced-queries] the cast to microsoft.graph.user drops devices and groups, and needs ConsistencyLevel.
#[tokio::test]
async fn the_user_cast_excludes_devices_and_needs_consistency_level() {
    let app = spawn().await;
    let (group, user, _) = mixed_group(&app);
    let token = app.reader_token().await;
    let path = format!("groups/{group}/members/microsoft.graph.user?$count=true");
    let page = json(app.get_eventual(&token, &path).await).await;
    let value = page["value"].as_array().unwrap();
    assert_eq!(value.len(), 1);
    assert_eq!(value[0]["id"], user.as_str());
    assert_eq!(page["@odata.count"], 1);

    let (status, ..) = error_code(app.get(&token, &path).await).await;
    assert_eq!(status, 400, "no ConsistencyLevel header");
}

// The count is computed once per state of the directory (it travels in every nextLink), yet it follows every change:
// a member added, a member removed, a user deleted, and each listing (cast, transitive) counts its own.
#[tokio::test]
async fn counts_follow_every_change_of_the_directory() {
    let app = spawn().await;
    let (group, user, _) = mixed_group(&app);
    let token = app.reader_token().await;
    let users = format!("groups/{group}/members/microsoft.graph.user?$count=true");
    let transitive = format!("groups/{group}/transitiveMembers/microsoft.graph.user?$count=true");
    let count = |path: String| {
        let (app, token) = (&app, &token);
        async move { json(app.get_eventual(token, &path).await).await["@odata.count"].clone() }
    };
    assert_eq!((count(users.clone()).await, count(transitive.clone()).await), (1.into(), 2.into()));
    let carol = app.directory.add_user(TENANT_A, NewUser::new("carol@a.example"));
    app.directory.add_member(TENANT_A, &group, &carol);
    assert_eq!((count(users.clone()).await, count(transitive.clone()).await), (2.into(), 3.into()));
    app.directory.remove_member(TENANT_A, &group, &user);
    assert_eq!(count(users.clone()).await, 1);
    app.directory.delete_user(TENANT_A, &carol);
    assert_eq!((count(users).await, count(transitive).await), (0.into(), 1.into()));
}

// [group-list-transitivemembers] nested members are flattened; the nested group itself is listed too.
#[tokio::test]
async fn transitive_members_flatten_nested_groups() {
    let app = spawn().await;
    let (group, user, nested_user) = mixed_group(&app);
    let token = app.reader_token().await;
    let page =
        json(app.get_eventual(&token, &format!("groups/{group}/transitiveMembers/microsoft.graph.user")).await).await;
    let ids: Vec<&str> = page["value"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [user.as_str(), nested_user.as_str()]);
    let all = json(app.get(&token, &format!("groups/{group}/transitiveMembers")).await).await;
    assert_eq!(all["value"].as_array().unwrap().len(), 5);
}

// [group-list-members] authorizationInfo only when selected; $select returns only what was asked (+ type and id).
#[tokio::test]
async fn select_hides_authorization_info_unless_selected() {
    let app = spawn().await;
    let (group, ..) = mixed_group(&app);
    let token = app.reader_token().await;
    let default = json(app.get_eventual(&token, &format!("groups/{group}/members/microsoft.graph.user")).await).await;
    let alice = &default["value"][0];
    assert!(alice.get("authorizationInfo").is_none(), "{alice}");
    assert_eq!(alice["userPrincipalName"], "alice@a.example");

    let selected = json(
        app.get_eventual(&token, &format!("groups/{group}/members/microsoft.graph.user?$select=id,authorizationInfo"))
            .await,
    )
    .await;
    let alice = selected["value"][0].as_object().unwrap();
    let mut keys: Vec<&str> = alice.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["@odata.type", "authorizationInfo", "id"]);
    assert_eq!(alice["authorizationInfo"]["certificateUserIds"], serde_json::json!(["X509:<PN>alice@a.example"]));
}

// [group-list-members] /members/$count is text/plain and needs ConsistencyLevel: eventual.
#[tokio::test]
async fn members_count_is_plain_text() {
    let app = spawn().await;
    let (group, ..) = mixed_group(&app);
    let token = app.reader_token().await;
    let response = app.get_eventual(&token, &format!("groups/{group}/members/$count")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(response.text().await.unwrap(), "4");
    let (status, ..) = error_code(app.get(&token, &format!("groups/{group}/members/$count")).await).await;
    assert_eq!(status, 400);
}

// [permissions-overview] limited information: without a user-read permission, users show only @odata.type and id.
#[tokio::test]
async fn without_user_read_members_come_back_limited() {
    let app = spawn().await;
    let (group, user, _) = mixed_group(&app);
    let token = app.token(TENANT_A, MEMBERS_ONLY, "members-only").await;
    let page = json(app.get(&token, &format!("groups/{group}/members?$select=id,userPrincipalName")).await).await;
    let first = &page["value"][0];
    assert_eq!(first["id"], user.as_str());
    assert!(first["userPrincipalName"].is_null(), "{first}");
}

// [errors] objects of another tenant are invisible: 404 Request_ResourceNotFound.
#[tokio::test]
async fn groups_of_another_tenant_are_not_found() {
    let app = spawn().await;
    let (group, ..) = mixed_group(&app);
    let token = app.writer_token().await;
    let (status, code, _) = error_code(app.get(&token, &format!("groups/{group}/members")).await).await;
    assert_eq!((status, code.as_str()), (404, "Request_ResourceNotFound"));
}
