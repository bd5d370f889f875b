//! Users: reading, the certificateUserIds lookup and PATCH rules.
//! [user-get] [user-update] [concept-certificate-based-authentication-certificateuserids]

use graph_emulator::NewUser;
use serde_json::Value;

use crate::helpers::*;

fn values(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("X509:<PN>{prefix}{i}@b.example")).collect()
}

// [user-update] PATCH replaces the whole collection and answers 204.
#[tokio::test]
async fn patch_replaces_the_whole_collection() {
    let app = spawn().await;
    let user = app.directory.add_user(TENANT_B, NewUser::new("u@b.example").certificate_user_ids(["X509:<PN>old"]));
    let token = app.writer_token().await;
    let response = app.patch_values(&token, &user, &values(2, "new")).await;
    assert_eq!(response.status(), 204);
    assert_eq!(app.directory.user(TENANT_B, &user).unwrap().certificate_user_ids, values(2, "new"));
}

// [concept-certificate-based-authentication-certificateuserids] at most 10 values, each at most 1,024 characters,
// no duplicates.
#[tokio::test]
async fn patch_limits_count_length_and_duplicates() {
    let app = spawn().await;
    let user = app.directory.add_user(TENANT_B, NewUser::new("u@b.example"));
    let token = app.writer_token().await;
    let long = |n: usize| format!("X509:<PN>{}", "a".repeat(n - 9));
    let cases: Vec<(Vec<String>, u16, &str)> = vec![
        (values(11, "v"), 400, "11 values"),
        (vec![long(1025)], 400, "1,025 characters"),
        (vec!["X509:<PN>same".into(), "X509:<PN>same".into()], 400, "duplicates"),
        (values(10, "v"), 204, "10 values"),
        (vec![long(1024)], 204, "1,024 characters"),
    ];
    for (list, status, what) in cases {
        let response = app.patch_values(&token, &user, &list).await;
        assert_eq!(response.status(), status, "{what}");
        if status == 400 {
            let (_, code, _) = error_code(response).await;
            assert_eq!(code, "Request_BadRequest", "{what}");
        }
    }
}

// [concept-certificate-based-authentication-certificateuserids] a value is unique in the tenant.
#[tokio::test]
async fn a_value_held_by_another_user_is_a_conflict() {
    let app = spawn().await;
    app.directory.add_user(TENANT_B, NewUser::new("holder@b.example").certificate_user_ids(["X509:<PN>taken"]));
    let user = app.directory.add_user(TENANT_B, NewUser::new("u@b.example"));
    let token = app.writer_token().await;
    let (status, code, message) =
        error_code(app.patch_values(&token, &user, &["X509:<PN>taken".to_owned()]).await).await;
    assert_eq!((status, code.as_str()), (400, "Request_BadRequest"));
    assert_eq!(message, "Another object with the same value for property certificateUserIds already exists.");
}

// [user-update] on-premises mastered users cannot be written through Graph.
#[tokio::test]
async fn a_synced_user_is_refused() {
    let app = spawn().await;
    let user = app.directory.add_user(TENANT_B, NewUser::new("synced@b.example").synced(true));
    let token = app.writer_token().await;
    let (status, _, message) = error_code(app.patch_values(&token, &user, &values(1, "s")).await).await;
    assert_eq!(status, 400);
    assert!(message.starts_with("Unable to update the specified properties for on-premises mastered"), "{message}");
}

// [concept-certificate-based-authentication-certificateuserids] the holder lookup is an advanced query; quotes doubled.
#[tokio::test]
async fn who_holds_a_value_needs_advanced_query_parameters() {
    let app = spawn().await;
    let holder = app
        .directory
        .add_user(TENANT_B, NewUser::new("o'brien@b.example").certificate_user_ids(["X509:<PN>o'brien@b.example"]));
    let token = app.writer_token().await;
    let filter = "authorizationInfo/certificateUserIds/any(x:x eq 'X509:<PN>o''brien@b.example')";
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("$select", "id,userPrincipalName,authorizationInfo")
        .append_pair("$filter", filter)
        .append_pair("$count", "true")
        .finish();
    let response = app.get_eventual(&token, &format!("users?{query}")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["@odata.count"], 1);
    assert_eq!(body["value"][0]["id"], holder.as_str());

    let (status, ..) = error_code(app.get(&token, &format!("users?{query}")).await).await;
    assert_eq!(status, 400, "without ConsistencyLevel");
}

// [user-get] a user by id or UPN, with $select.
#[tokio::test]
async fn get_user_by_id_or_upn_with_select() {
    let app = spawn().await;
    let id = app.directory.add_user(
        TENANT_B,
        NewUser::new("u@b.example").employee_id("42").certificate_user_ids(["X509:<PN>u@b.example"]),
    );
    let token = app.writer_token().await;
    let body: Value = app.get(&token, "users/u@b.example?$select=id,employeeId").await.json().await.unwrap();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["employeeId"], "42");
    assert!(body.get("authorizationInfo").is_none());
    let (status, code, _) = error_code(app.get(&token, "users/u@b.example?$select=nonsense").await).await;
    assert_eq!((status, code.as_str()), (400, "Request_BadRequest"));
}

// [auth-v2-service] no token, an expired token, a token for another audience: 401 InvalidAuthenticationToken.
#[tokio::test]
async fn bad_tokens_are_401() {
    let app = spawn().await;
    let id = app.directory.add_user(TENANT_B, NewUser::new("u@b.example"));
    let path = format!("users/{id}");
    let response = app.client.get(app.graph(&path)).send().await.unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(error_code(response).await.1, "InvalidAuthenticationToken");

    let header = app.emulator.managed_identity_header().to_owned();
    let arm: Value = app.managed_identity("https://management.azure.com", &header).await.json().await.unwrap();
    let (status, code, message) = error_code(app.get(arm["access_token"].as_str().unwrap(), &path).await).await;
    assert_eq!((status, code.as_str()), (401, "InvalidAuthenticationToken"), "{message}");

    let token = app.writer_token().await;
    assert_eq!(app.get(&token, &path).await.status(), 200);
    app.directory.advance_clock(std::time::Duration::from_secs(2 * 3600));
    let (status, code, message) = error_code(app.get(&token, &path).await).await;
    assert_eq!((status, code.as_str()), (401, "InvalidAuthenticationToken"));
    assert!(message.contains("expired"), "{message}");
}

// [user-update] [permissions-reference] writing needs User.ReadWrite.All: 403 Authorization_RequestDenied.
#[tokio::test]
async fn writing_without_permission_is_403() {
    let app = spawn().await;
    let id = app.directory.add_user(TENANT_A, NewUser::new("u@a.example"));
    let token = app.reader_token().await;
    let (status, code, message) = error_code(app.patch_values(&token, &id, &values(1, "x")).await).await;
    assert_eq!((status, code.as_str()), (403, "Authorization_RequestDenied"));
    assert_eq!(message, "Insufficient privileges to complete the operation.");
    // And reading users without a user permission.
    let token = app.token(TENANT_A, MEMBERS_ONLY, "members-only").await;
    let (status, ..) = error_code(app.get(&token, &format!("users/{id}")).await).await;
    assert_eq!(status, 403);
}
