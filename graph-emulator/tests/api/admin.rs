//! The admin API under /_emulator/ (the back door over HTTP).

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_scenario_loads_and_members_change_over_the_admin_api() {
    let app = spawn().await;
    let base = app.emulator.http_url();
    let scenario = json!({"tenants": [{
        "id": "tenant-c",
        "apps": [{"client_id": "app-c", "client_secret": "s", "roles": ["GroupMember.Read.All", "User.Read.All"]}],
        "users": [{"ref": "alice", "user_principal_name": "alice@c.example", "certificate_user_ids": ["X509:<PN>alice@c.example"]},
                  {"ref": "bob", "user_principal_name": "bob@c.example", "on_premises_sync_enabled": true}],
        "devices": [{"ref": "laptop", "display_name": "laptop"}],
        "groups": [{"ref": "g", "display_name": "G", "members": ["alice", "laptop"]}],
        "generated_users": {"count": 3, "member_of": ["g"], "with_certificate_user_ids": true}
    }]});
    let loaded: Value = app
        .client
        .post(format!("{base}_emulator/scenario"))
        .json(&scenario)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids = &loaded["ids"]["tenant-c"];
    let (group, bob) = (ids["g"].as_str().unwrap(), ids["bob"].as_str().unwrap());
    assert_eq!(app.directory.members("tenant-c", group).len(), 5);

    let added =
        app.client.post(format!("{base}_emulator/tenants/tenant-c/groups/{group}/members/{bob}")).send().await.unwrap();
    assert_eq!(added.status(), 204);
    let token = app.token("tenant-c", "app-c", "s").await;
    let page: Value = app.get(&token, &format!("groups/{group}/members?$select=id")).await.json().await.unwrap();
    assert_eq!(page["value"].as_array().unwrap().len(), 6);

    let removed = app
        .client
        .delete(format!("{base}_emulator/tenants/tenant-c/groups/{group}/members/{bob}"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let user: Value = app
        .client
        .get(format!("{base}_emulator/tenants/tenant-c/users/{bob}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["on_premises_sync_enabled"], true);
    let missing =
        app.client.post(format!("{base}_emulator/tenants/tenant-c/groups/nope/members/{bob}")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let requests: Value =
        app.client.get(format!("{base}_emulator/requests")).send().await.unwrap().json().await.unwrap();
    assert!(requests.as_array().unwrap().iter().any(|r| r["kind"] == "Token" && r["tenant"] == "tenant-c"));
    let faults = app
        .client
        .put(format!("{base}_emulator/faults"))
        .json(&json!({"error_rate": 1.0, "kinds": ["Internal500"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), 204);
    assert_eq!(app.get(&token, &format!("groups/{group}/members")).await.status(), 500);
}
