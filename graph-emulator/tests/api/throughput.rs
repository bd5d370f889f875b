//! A quick throughput figure (run with `cargo test -p graph-emulator --release --test api throughput -- --ignored --nocapture`).

use std::time::Instant;

use futures::StreamExt;
use graph_emulator::{EmulatorOptions, NewUser, Throttling};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn throughput_of_member_page_reads() {
    let app = spawn_with(EmulatorOptions { throttling: Throttling::Off, ..EmulatorOptions::default() }).await;
    let group = app.directory.add_group(TENANT_A, "big");
    let ids: Vec<String> = (0..100_000)
        .map(|n| {
            app.directory.add_user(
                TENANT_A,
                NewUser::new(format!("u{n}@a.example")).certificate_user_ids([format!("X509:<PN>u{n}@a.example")]),
            )
        })
        .collect();
    app.directory.add_members(TENANT_A, &group, &ids);
    let token = app.reader_token().await;
    let requests = 10_000;
    for (name, base, top) in [
        ("http", app.emulator.http_url(), 100),
        ("https", app.emulator.https_url(), 100),
        ("http", app.emulator.http_url(), 999),
    ] {
        let url = format!(
            "{base}v1.0/groups/{group}/members/microsoft.graph.user?$top={top}&$select=id,userPrincipalName,mail,employeeId,onPremisesSamAccountName,onPremisesSyncEnabled,authorizationInfo"
        );
        let started = Instant::now();
        let ok = futures::stream::iter(0..requests)
            .map(|_| {
                let request = app.client.get(&url).bearer_auth(&token).header("ConsistencyLevel", "eventual");
                async move {
                    let response = request.send().await.expect("answer");
                    let status = response.status();
                    let _ = response.bytes().await;
                    status == 200
                }
            })
            .buffer_unordered(32)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        let elapsed = started.elapsed();
        assert_eq!(ok, requests);
        println!(
            "{requests} member pages ({name}, $top={top}, 100k-member group): {:.2}s, {:.0} requests/s",
            elapsed.as_secs_f64(),
            requests as f64 / elapsed.as_secs_f64()
        );
    }
}
