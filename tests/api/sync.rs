//! End to end: the timer function syncing through the emulator, with its log in Azurite.

use std::time::{Duration, Instant};

use certsync::demo::{self, ADMIN_VALUE, TENANT_A, TENANT_B};
use graph_emulator::{EmulatorOptions, NewUser, RequestKind};
use serde_json::Value;

use certsync_test_support::report::Report;

use super::helpers::{TestApp, World, timer_envelope};

fn writes(world: &World) -> usize {
    world.emulator.directory().requests().iter().filter(|r| r.kind == RequestKind::Write).count()
}

#[tokio::test]
async fn a_run_leaves_a_text_log_and_a_json_report_in_the_log_container() {
    let world = World::start().await;
    let app = TestApp::spawn(&world.env).await;
    let (status, _, reply) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!(status, 200, "{reply}");

    let blobs = world.log_blobs().await;
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    let run_id = reply["ReturnValue"]["runId"].as_str().unwrap();
    let today = time::OffsetDateTime::now_utc();
    let prefix = format!("{:04}/{:02}/{:02}/log_", today.year(), u8::from(today.month()), today.day());
    for blob in &blobs {
        assert!(blob.starts_with(&prefix) && blob.contains(run_id), "{blob} should be {prefix}<timestamp>_{run_id}");
    }
    let store = world.log_store().await;
    use certsync::storage::BlobStore;
    let text_blob = blobs.iter().find(|b| b.ends_with(".log")).unwrap();
    let text = String::from_utf8(store.get(text_blob).await.unwrap().unwrap().bytes).unwrap();
    for expected in [
        "Only in Tenant A: dave@tenant-a.example",
        "Only in Tenant B: erin@tenant-b.example",
        "Ambiguous key \"jdoe\"",
        "synchronized from on-premises",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from the log:\n{text}");
    }
    let json_blob = blobs.iter().find(|b| b.ends_with(".json")).unwrap();
    // Read through the typed view written from docs/run-report.md: a field renamed in the product fails here.
    let report = Report::parse(&store.get(json_blob).await.unwrap().unwrap().bytes);
    assert_eq!(report.schema_version, 1);
    assert_eq!(report.run_id, run_id);
    assert_eq!((report.totals.matched, report.totals.values_added), (3, 2));
    assert_eq!(report.changes.len(), 2);
    assert_eq!((report.trigger.kind.as_str(), report.outcome.status.as_str()), ("timer", "succeeded"));
    // Each change as docs/run-report.md names its fields: the user and the list written, not only the difference.
    for change in &report.changes {
        assert!(
            change.user.user_principal_name.ends_with("@tenant-b.example") && !change.user.id.is_empty(),
            "{change:?}"
        );
        assert!(change.add.iter().all(|v| change.after.contains(v)), "{change:?}");
        assert!(
            change.before.iter().all(|v| change.after.contains(v)) && change.remove.is_empty(),
            "nothing removed: {change:?}"
        );
        assert_eq!(change.status, "applied");
    }
}

#[tokio::test]
async fn a_second_run_with_nothing_changed_sends_no_writes_and_keeps_the_administrators_value() {
    let world = World::start().await;
    let app = TestApp::spawn(&world.env).await;
    app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    let after_first = writes(&world);
    assert_eq!(after_first, 2);
    assert_eq!(world.values_of("bob"), [ADMIN_VALUE, "X509:<S>CN=bob"]);

    let (_, _, reply) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;

    assert_eq!(writes(&world), after_first, "{reply}");
    assert_eq!(reply["ReturnValue"]["counts"]["usersChanged"], 0);
    assert_eq!(world.values_of("bob"), [ADMIN_VALUE, "X509:<S>CN=bob"]);
}

#[tokio::test]
async fn a_run_killed_halfway_is_completed_by_the_next_without_duplicates_or_lost_values() {
    // Slow Graph (latency per request) and 200 more matched users: the apply phase takes several batches.
    let world =
        World::start_with(EmulatorOptions { latency: Duration::from_millis(40), ..EmulatorOptions::default() }).await;
    let directory = world.emulator.directory();
    let mut targets = Vec::new();
    for i in 0..200 {
        let a = directory.add_user(TENANT_A, NewUser::new(format!("bulk{i}@tenant-a.example")));
        directory.add_member(TENANT_A, &world.world.group_a, &a);
        let mut b = NewUser::new(format!("bulk{i}@tenant-b.example"));
        if i % 7 == 0 {
            b = b.certificate_user_ids([format!("X509:<PN>bulk{i}@own.example")]);
        }
        let b = directory.add_user(TENANT_B, b);
        directory.add_member(TENANT_B, &world.world.group_b, &b);
        targets.push((i, b));
    }
    let mut app = TestApp::spawn(&world.env).await;
    let invocation = {
        let url = app.url("/function-cert-sync");
        tokio::spawn(async move {
            reqwest::Client::new().post(url).body(timer_envelope(Value::Null, false).to_string()).send().await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while writes(&world) < 40 {
        assert!(Instant::now() < deadline, "the run never started writing:\n{}", app.output());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.kill();
    let _ = invocation.await;
    let written_before_crash = writes(&world);
    assert!(written_before_crash < 202, "the run finished before it was killed ({written_before_crash} writes)");

    let app = TestApp::spawn(&world.env).await;
    // The crashed run's lease expires by itself (15 s); until then a run is skipped, not failed.
    let deadline = Instant::now() + Duration::from_secs(40);
    let reply = loop {
        let (status, _, reply) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
        assert_eq!(status, 200, "{reply}\n{}", app.output());
        if reply["ReturnValue"]["outcome"] != "skipped" {
            break reply;
        }
        assert!(Instant::now() < deadline, "the crashed run's lease never expired");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(reply["ReturnValue"]["outcome"], "succeeded", "{reply}");

    for (i, id) in &targets {
        let values = directory.user(TENANT_B, id).unwrap().certificate_user_ids;
        let mut expected = Vec::new();
        if i % 7 == 0 {
            expected.push(format!("X509:<PN>bulk{i}@own.example"));
        }
        expected.push(format!("X509:<S>CN=bulk{i}"));
        assert_eq!(values, expected, "bulk{i}");
    }
    // And the next run has nothing left to do.
    let (_, _, reply) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!(reply["ReturnValue"]["counts"]["usersChanged"], 0, "{reply}");
}

#[tokio::test]
async fn storage_stopped_mid_run_leaves_the_sync_standing_and_the_log_on_stdout() {
    let mut world =
        World::start_with(EmulatorOptions { latency: Duration::from_millis(30), ..EmulatorOptions::default() }).await;
    let directory = world.emulator.directory();
    let mut targets = Vec::new();
    for i in 0..120 {
        let a = directory.add_user(TENANT_A, NewUser::new(format!("bulk{i}@tenant-a.example")));
        directory.add_member(TENANT_A, &world.world.group_a, &a);
        let b = directory.add_user(TENANT_B, NewUser::new(format!("bulk{i}@tenant-b.example")));
        directory.add_member(TENANT_B, &world.world.group_b, &b);
        targets.push((i, b));
    }
    let app = TestApp::spawn(&world.env).await;
    let invocation = {
        let url = app.url("/function-cert-sync");
        tokio::spawn(async move {
            let response =
                reqwest::Client::new().post(url).body(timer_envelope(Value::Null, false).to_string()).send().await?;
            response.json::<Value>().await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while writes(&world) == 0 {
        assert!(Instant::now() < deadline, "the run never started writing:\n{}", app.output());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    world.azurite.stop();

    let reply = invocation.await.unwrap().expect("the invocation answers");

    assert_eq!(reply["ReturnValue"]["outcome"], "succeeded", "{reply}");
    assert_eq!(reply["ReturnValue"]["logBlob"], "stdout", "{reply}");
    for (i, id) in &targets {
        assert_eq!(directory.user(TENANT_B, id).unwrap().certificate_user_ids, [format!("X509:<S>CN=bulk{i}")]);
    }
    let run_id = reply["ReturnValue"]["runId"].as_str().unwrap();
    let needle = format!("certsync-run-log {run_id}: Totals: matched 123");
    let stdout = app.wait_for_stdout(&needle).await;
    assert!(stdout.contains(&needle), "the full log went to stdout:\n{stdout}");
}

#[tokio::test]
async fn no_log_report_or_output_contains_a_configured_secret() {
    let world = World::start().await;
    let app = TestApp::spawn(&world.env).await;
    for _ in 0..2 {
        app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    }
    let secrets = [demo::SECRET_A, demo::SECRET_B, "test-client-state", super::azurite::KEY];
    let store = world.log_store().await;
    use certsync::storage::BlobStore;
    let stdout = app.output.stdout();
    // The positive twin of every check below: the texts searched hold what they are meant to, so an empty capture
    // cannot pass for a clean one.
    assert!(stdout.contains("sync run finished"), "the process log was captured:\n{stdout}");
    let mut produced = vec![stdout, app.output.stderr()];
    let blobs = world.log_blobs().await;
    assert_eq!(blobs.len(), 4, "two runs, two blobs each: {blobs:?}");
    for blob in blobs {
        let text = String::from_utf8(store.get(&blob).await.unwrap().unwrap().bytes).unwrap();
        let expected = if blob.ends_with(".json") { "\"schemaVersion\"" } else { "Totals: matched" };
        assert!(text.contains(expected), "{blob} holds its run's log: {text}");
        produced.push(text);
    }
    for text in &produced {
        for secret in secrets {
            assert!(!text.contains(secret), "a configured secret appears in a log or report");
        }
        // A SAS signature would look like `sig=`: none may be logged either.
        assert!(!text.contains("sig="), "a SAS signature appears in a log or report");
    }
}

#[tokio::test]
async fn a_second_timer_run_started_while_one_is_writing_is_handed_to_it_by_the_lease() {
    let world =
        World::start_with(EmulatorOptions { latency: Duration::from_millis(30), ..EmulatorOptions::default() }).await;
    let directory = world.emulator.directory();
    for i in 0..100 {
        let a = directory.add_user(TENANT_A, NewUser::new(format!("bulk{i}@tenant-a.example")));
        directory.add_member(TENANT_A, &world.world.group_a, &a);
        let b = directory.add_user(TENANT_B, NewUser::new(format!("bulk{i}@tenant-b.example")));
        directory.add_member(TENANT_B, &world.world.group_b, &b);
    }
    let app = TestApp::spawn(&world.env).await;
    let envelope = timer_envelope(Value::Null, false);
    let first = app.invoke("function-cert-sync", &envelope);
    let second = async {
        // Start the second run once the first is reading Graph (it holds the lease by then).
        let deadline = Instant::now() + Duration::from_secs(30);
        while directory.requests().iter().all(|r| r.kind != graph_emulator::RequestKind::Read) {
            assert!(Instant::now() < deadline, "the first run never read Graph");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await
    };
    let ((_, _, first), (status, _, second)) = tokio::join!(first, second);

    assert_eq!(first["ReturnValue"]["outcome"], "succeeded", "{first}");
    assert_eq!(status, 200, "a skipped run is not a failed invocation");
    assert_eq!(second["ReturnValue"]["outcome"], "skipped", "{second}");
    // Handed to the run holding the lease (issue 20), which is itself a full sync: it queues no other.
    assert!(second["Logs"].to_string().contains("handed to it"), "{second}");
    assert_eq!(second["ReturnValue"]["counts"]["usersChanged"], 0);
    assert!(first["Outputs"].get("followUps").is_none(), "a full sync that ran is the one that was due: {first}");
}

#[tokio::test]
async fn a_run_of_more_users_than_one_apply_round_writes_each_once_and_frees_a_moving_value_first() {
    // Apply re-reads and writes 2,000 users per round; 2,100 new matched users take two rounds. A value also moves:
    // its old holder (left the group) is one user among 2,101 writes, and must be written before its new holder.
    let world = World::start().await;
    let directory = world.emulator.directory();
    let (group_a, group_b) = (&world.world.group_a, &world.world.group_b);
    let mover_a = directory.add_user(TENANT_A, NewUser::new("mover@tenant-a.example"));
    directory.add_member(TENANT_A, group_a, &mover_a);
    let old_holder = directory.add_user(TENANT_B, NewUser::new("mover@tenant-b.example"));
    directory.add_member(TENANT_B, group_b, &old_holder);
    let app = TestApp::spawn(&world.env).await;
    let (status, _, reply) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!(status, 200, "{reply}");
    let value = "X509:<S>CN=mover";
    assert_eq!(directory.user(TENANT_B, &old_holder).unwrap().certificate_user_ids, [value]);

    directory.remove_member(TENANT_B, group_b, &old_holder);
    let new_holder = directory.add_user(TENANT_B, NewUser::new("mover@tenant-b.example.net"));
    directory.add_member(TENANT_B, group_b, &new_holder);
    let bulk: Vec<(String, String)> = (0..2_100)
        .map(|i| {
            let a = directory.add_user(TENANT_A, NewUser::new(format!("bulk{i}@tenant-a.example")));
            let b = directory.add_user(TENANT_B, NewUser::new(format!("bulk{i}@tenant-b.example")));
            (a, b)
        })
        .collect();
    directory.add_members(TENANT_A, group_a, bulk.iter().map(|(a, _)| a));
    directory.add_members(TENANT_B, group_b, bulk.iter().map(|(_, b)| b));
    let before = writes(&world);

    let (status, _, reply) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;

    assert_eq!(status, 200, "{reply}");
    let counts = &reply["ReturnValue"]["counts"];
    assert_eq!((counts["usersChanged"].as_u64(), counts["failed"].as_u64()), (Some(2_102), Some(0)), "{reply}");
    assert_eq!(writes(&world) - before, 2_102, "one write per user, none repeated");
    assert!(directory.user(TENANT_B, &old_holder).unwrap().certificate_user_ids.is_empty());
    assert_eq!(directory.user(TENANT_B, &new_holder).unwrap().certificate_user_ids, [value]);
    for (i, (_, b)) in bulk.iter().enumerate() {
        let expected = format!("X509:<S>CN=bulk{i}");
        assert_eq!(directory.user(TENANT_B, b).unwrap().certificate_user_ids, [expected]);
    }
    let settled = writes(&world);
    let (_, _, reply) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!(writes(&world), settled, "converged: {reply}");
}
