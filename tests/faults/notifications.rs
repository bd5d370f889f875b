//! Change notifications lost or delivered twice, through the real webhook and queue functions behind the host shim
//! (tests/support/src/host.rs). A notification is never the change (docs/decisions.md): a lost one waits for the timer's
//! full sync, a duplicate finds nothing new in delta query and writes nothing.

use std::time::Duration;

use certsync::demo::{TENANT_A, TENANT_B};
use graph_emulator::{EmulatorOptions, Faults};
use rand::Rng;
use serde_json::Value;

use super::helpers::{TestApp, timer_envelope};
use super::host::HostShim;
use super::world::{Scenario, writes_per_user};

const FUNCTION_KEY: &str = "fault-suite-function-key";
const SETTLE: Duration = Duration::from_secs(60);

/// The scenario after its baseline, with the binary served behind the shim, subscriptions created by the timer, and
/// a delta position for each group (a group's first notification reconciles its pair in full, so one harmless
/// change per group goes first).
async fn served(name: &'static str, seed: u64) -> (Scenario, HostShim, TestApp) {
    let mut s = Scenario::baseline(name, seed, EmulatorOptions::default()).await;
    let shim = HostShim::bind(FUNCTION_KEY).await;
    s.env.insert("WEBHOOK_NOTIFICATION_URL".into(), shim.notification_url());
    let app = TestApp::spawn(&s.env).await;
    shim.connect(app.port);
    timer(&app).await;
    let directory = s.directory();
    assert_eq!(directory.subscriptions(TENANT_A).len() + directory.subscriptions(TENANT_B).len(), 2);
    let device_a = directory.add_device(TENANT_A, "warm-up A");
    directory.add_member(TENANT_A, &s.group_a, &device_a);
    let device_b = directory.add_device(TENANT_B, "warm-up B");
    directory.add_member(TENANT_B, &s.group_b, &device_b);
    shim.settle("the warm-up notifications", SETTLE, || successes(&shim) >= 2).await;
    directory.clear_requests();
    (s, shim, app)
}

async fn timer(app: &TestApp) -> Value {
    let (status, _, reply) = app.invoke("function-cert-sync", &timer_envelope(Value::Null, false)).await;
    assert_eq!(status, 200, "{reply}\n{}", app.output());
    reply
}

/// Waits until the emulator has stopped delivering (no webhook POST for a while) and the queue is drained: delivery
/// is asynchronous, so an idle queue alone may only mean nothing has arrived yet.
async fn quiesce(shim: &HostShim) {
    let started = std::time::Instant::now();
    loop {
        shim.settle("the queue", SETTLE, || true).await;
        let posts = shim.webhook_posts();
        tokio::time::sleep(Duration::from_millis(700)).await;
        shim.settle("the queue", SETTLE, || true).await;
        if shim.webhook_posts() == posts {
            return;
        }
        assert!(started.elapsed() < SETTLE, "deliveries never stopped");
    }
}

fn successes(shim: &HostShim) -> usize {
    shim.invocations().iter().filter(|i| i.status == 200).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_notifications_are_caught_up_by_the_timers_full_sync_exactly() {
    let (mut s, shim, app) = served("notifications-dropped", 0xD0_0001).await;
    s.faults(Faults { notification_drop_rate: 0.6, ..Faults::default() });

    s.administer();
    quiesce(&shim).await;

    let injected = s.injected().await;
    assert!(injected["notifications_dropped"].as_u64() >= Some(1), "{injected}");
    // The timer is the net.
    s.faults(Faults::default());
    let reply = timer(&app).await;
    assert_eq!(reply["ReturnValue"]["outcome"], "succeeded", "{reply}");
    s.assert_oracle();
    assert!(shim.poison().is_empty(), "{:#?}", shim.poison());
    drop(app);
    s.converges().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicated_notifications_write_each_user_at_most_once_and_converge_exactly() {
    let (mut s, shim, app) = served("notifications-duplicated", 0xD0_0002).await;
    s.faults(Faults { notification_duplicate_rate: 1.0, ..Faults::default() });

    s.administer();
    quiesce(&shim).await;

    let injected = s.injected().await;
    assert!(injected["notifications_duplicated"].as_u64() >= Some(2), "{injected}");
    let writes = s.user_writes();
    assert!(!writes.is_empty(), "the notifications applied changes");
    let twice: Vec<_> = writes_per_user(&writes).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "users written more than once: {twice:?}\n{writes:#?}");
    s.faults(Faults::default());
    let reply = timer(&app).await;
    assert_eq!(reply["ReturnValue"]["outcome"], "succeeded", "{reply}");
    s.assert_oracle();
    drop(app);
    s.converges().await;
}

/// The notification path and the full sync agree (issue 20): random membership changes on both sides, round after
/// round, each delivered only as change notifications, end exactly in the state one full sync of the directory gives
/// (the oracle), and the timer's full sync afterwards finds nothing to write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_membership_changes_through_notifications_end_where_a_full_sync_would() {
    let seeds: Vec<u64> = match std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => vec![0xD0_0101, 0xD0_0102],
    };
    for seed in seeds {
        let (mut s, shim, app) = served("notifications-random-changes", seed).await;
        let directory = s.directory();
        for _round in 0..3 {
            // Up to two users of each side join or leave their group: few enough that no removal is a mass one.
            let flips_a = s.rng.random_range(0..=2);
            for _ in 0..flips_a {
                let index = s.rng.random_range(0..s.model.source.len());
                let user = &mut s.model.source[index];
                flip_membership(&directory, TENANT_A, &s.group_a, &user.id, &mut user.member);
            }
            for _ in 0..(3 - flips_a) {
                let index = s.rng.random_range(0..s.model.target.len());
                let user = &mut s.model.target[index];
                flip_membership(&directory, TENANT_B, &s.group_b, &user.id, &mut user.member);
            }
            quiesce(&shim).await;
            s.assert_oracle();
        }
        assert!(shim.poison().is_empty(), "{:#?}", shim.poison());
        assert!(!s.user_writes().is_empty(), "seed {seed}: the changes wrote nothing, so they proved nothing");
        directory.clear_requests();
        let reply = timer(&app).await;
        assert_eq!(reply["ReturnValue"]["outcome"], "succeeded", "{reply}");
        assert!(s.user_writes().is_empty(), "the full sync found something the notifications missed: {reply}");
        drop(app);
    }
}

/// The user joins the group if it was not a member, and leaves it if it was; `member` (the model's) follows.
fn flip_membership(directory: &graph_emulator::Directory, tenant: &str, group: &str, user: &str, member: &mut bool) {
    if *member {
        directory.remove_member(tenant, group, user);
    } else {
        directory.add_member(tenant, group, user);
    }
    *member = !*member;
}
