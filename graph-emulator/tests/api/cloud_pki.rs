//! Intune Cloud PKI under beta [intune-cloudpkigraphservice-cloudcertificationauthority-list,
//! intune-cloudpkigraphservice-cloudcertificationauthorityleafcertificate-list].

use std::time::Duration;

use graph_emulator::{AppRegistration, LeafRequest, NewUser};
use serde_json::Value;

use crate::helpers::{TENANT_A, TestApp, error_code, spawn};

const PKI_READER: &str = "a0a0a0a0-0000-4000-8000-0000000000f1";
const PKI_SECRET: &str = "pki-reader-secret";

async fn pki_app() -> (TestApp, String, String) {
    let app = spawn().await;
    app.directory.add_app(
        TENANT_A,
        AppRegistration {
            client_id: PKI_READER.into(),
            client_secret: Some(PKI_SECRET.into()),
            roles: vec![
                "DeviceManagementCloudCA.ReadWrite.All".into(),
                "DeviceManagementConfiguration.Read.All".into(),
            ],
            federated_credentials: vec![],
        },
    );
    let authority = app.directory.add_cloud_ca(TENANT_A, "Issuing CA").unwrap();
    let user = app.directory.add_user(TENANT_A, NewUser::new("alice@a.example"));
    (app, authority, user)
}

fn beta(app: &TestApp, path: &str) -> String {
    format!("{}beta/{}", app.emulator.https_url(), path)
}

async fn get_json(app: &TestApp, token: &str, url: &str) -> Value {
    let response = app.client.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn leaf_status_follows_revocation_and_the_clock_and_filters_on_it() {
    let (app, authority, user) = pki_app().await;
    let now = app.directory.now();
    let issue = |valid: Duration| {
        app.directory
            .issue_leaf_certificate(
                TENANT_A,
                LeafRequest {
                    authority_id: &authority,
                    user_id: &user,
                    device_name: "LAPTOP",
                    not_before: now - time::Duration::days(1),
                    not_after: now + valid,
                },
            )
            .unwrap()
    };
    let long = issue(Duration::from_secs(365 * 86_400));
    let short = issue(Duration::from_secs(600));
    let revoked = issue(Duration::from_secs(365 * 86_400));
    assert!(app.directory.revoke_leaf_certificate(TENANT_A, &revoked.id));
    let token = app.token(TENANT_A, PKI_READER, PKI_SECRET).await;
    let leaves =
        format!("deviceManagement/cloudCertificationAuthority/{authority}/cloudCertificationAuthorityLeafCertificate");
    let active = |body: Value| -> Vec<String> {
        body["value"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect()
    };
    let filter = "?$filter=certificateStatus%20eq%20'active'";
    let body = get_json(&app, &token, &beta(&app, &format!("{leaves}{filter}"))).await;
    let mut expected = vec![long.id.clone(), short.id.clone()];
    expected.sort();
    let mut got = active(body.clone());
    got.sort();
    assert_eq!(got, expected);
    let record = &body["value"].as_array().unwrap().iter().find(|l| l["id"] == long.id.as_str()).unwrap().clone();
    assert_eq!(record["serialNumber"], long.serial_number.as_str());
    assert_eq!(record["thumbprint"], long.thumbprint.as_str());
    assert_eq!(record["userPrincipalName"], "alice@a.example");

    app.directory.advance_clock(Duration::from_secs(700));
    let token = app.token(TENANT_A, PKI_READER, PKI_SECRET).await;
    let body = get_json(&app, &token, &beta(&app, &format!("{leaves}{filter}"))).await;
    assert_eq!(active(body), vec![long.id.clone()], "the short-lived certificate expired with time");
    let all = get_json(&app, &token, &beta(&app, "deviceManagement/cloudCertificationAuthorityLeafCertificate")).await;
    let statuses: Vec<&str> =
        all["value"].as_array().unwrap().iter().map(|l| l["certificateStatus"].as_str().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "expired").count(), 1);
    assert_eq!(statuses.iter().filter(|s| **s == "revoked").count(), 1);
}

#[tokio::test]
async fn the_ca_certificate_is_published_without_authentication_and_beta_only_routes_refuse_v1() {
    let (app, authority, _) = pki_app().await;
    let token = app.token(TENANT_A, PKI_READER, PKI_SECRET).await;
    let list = get_json(&app, &token, &beta(&app, "deviceManagement/cloudCertificationAuthority")).await;
    let url = list["value"][0]["certificateDownloadUrl"].as_str().unwrap().to_owned();
    let der = app.client.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(der.to_vec(), app.directory.cloud_ca_certificate(TENANT_A, &authority).unwrap());

    let v1 = app.get(&token, "deviceManagement/cloudCertificationAuthority").await;
    assert_eq!(v1.status(), 400);

    // The member reader has no Intune permission.
    let reader = app.reader_token().await;
    let response = app
        .client
        .get(beta(&app, "deviceManagement/cloudCertificationAuthority"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (403, "Authorization_RequestDenied"));

    let bad = app
        .client
        .get(beta(
            &app,
            "deviceManagement/cloudCertificationAuthorityLeafCertificate?$filter=userPrincipalName%20eq%20'a'",
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "userPrincipalName is not filterable");
}
