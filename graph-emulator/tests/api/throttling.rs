//! Throttling and injected faults. [throttling] [throttling-limits]

use graph_emulator::{EmulatorOptions, FaultKind, Faults, NewUser, Throttling};

use crate::helpers::*;

// [throttling-limits] members cost 3 RU (2 with $select); once the budget is spent: 429 with Retry-After and scope.
#[tokio::test]
async fn spending_the_budget_gives_429_with_retry_after() {
    let app = spawn_with(EmulatorOptions {
        throttling: Throttling::Custom { resource_units_per_10s: 9, writes_per_150s: 10 },
        ..EmulatorOptions::default()
    })
    .await;
    let group = app.directory.add_group(TENANT_A, "g");
    let user = app.directory.add_user(TENANT_A, NewUser::new("u@a.example"));
    app.directory.add_member(TENANT_A, &group, &user);
    let token = app.reader_token().await;
    let path = format!("groups/{group}/members");
    let first = app.get(&token, &path).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ms-resource-unit"], "3");
    let selected = app.get(&token, &format!("{path}?$select=id")).await;
    assert_eq!(selected.headers()["x-ms-resource-unit"], "2", "$select takes one off");
    let third = app.get(&token, &path).await;
    assert_eq!(third.status(), 200);
    assert!(third.headers().contains_key("x-ms-throttle-limit-percentage"), "8 of 9 RU used");

    let throttled = app.get(&token, &path).await;
    assert_eq!(throttled.status(), 429);
    let retry_after: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let scope = throttled.headers()["x-ms-throttle-scope"].to_str().unwrap().to_owned();
    assert_eq!(scope, format!("Tenant_Application/ReadWrite/{READER}/{TENANT_A}"));
    assert_eq!(throttled.headers()["x-ms-throttle-information"], "ResourceUnitLimitExceeded");
    let (_, code, _) = error_code(throttled).await;
    assert_eq!(code, "TooManyRequests");
}

// [throttling] injected faults: each kind answers as Graph would.
#[tokio::test]
async fn injected_faults_answer_like_graph() {
    let app = spawn().await;
    let token = app.writer_token().await;
    let cases = [(FaultKind::Internal500, 500), (FaultKind::Unavailable503, 503), (FaultKind::Throttle429, 429)];
    for (kind, status) in cases {
        app.emulator.set_faults(Faults { error_rate: 1.0, kinds: vec![kind], ..Faults::default() });
        let response = app.get(&token, "users").await;
        assert_eq!(response.status(), status, "{kind:?}");
        if status != 500 {
            assert!(response.headers().contains_key("retry-after"), "{kind:?}");
        }
    }
    app.emulator.set_faults(Faults::default());
    assert_eq!(app.get(&token, "users").await.status(), 200);
}
