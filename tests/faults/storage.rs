//! Azurite (the ledger, the lease, the run logs) stopped while a run is under way, a run started while it is down,
//! then Azurite back with its data: an outage of the storage account, not a loss of it.

use std::time::{Duration, Instant};

use graph_emulator::{EmulatorOptions, RequestKind};
use rand::Rng;

use super::world::{Scenario, finish};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_stopped_mid_run_and_restarted_loses_no_ownership_and_converges_exactly() {
    let mut s = Scenario::start_with(
        "azurite-stopped",
        0xA2_0917,
        EmulatorOptions { latency: Duration::from_millis(25), ..EmulatorOptions::default() },
    )
    .await;
    let graph_requests = |s: &Scenario| s.requests().iter().filter(|r| r.kind != RequestKind::Token).count();
    let stop_after = s.rng.random_range(1..=20);

    // Storage goes away at a random point of the run (reads, ledger claim, writes, settle, log upload).
    let before = s.before_run().await;
    let (child, output) = s.spawn_sync();
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph_requests(&s) < stop_after {
        assert!(Instant::now() < deadline, "the run never reached request {stop_after}:\n{}", output.stderr());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    s.azurite.stop_gracefully().await;
    let interrupted = finish(child, output).await;
    s.after_run(&before, "the run that lost Azurite");
    println!("stopped Azurite after {stop_after} Graph requests; that run: {}", interrupted.status());
    assert_ne!(interrupted.status(), "no report", "the run ends with a report: {}", interrupted.output.stderr());

    // A run that starts while storage is down can neither take the lease nor read the ledger: it writes nothing.
    s.directory().clear_requests();
    let blind = s.sync().await;
    assert_eq!(blind.status(), "failed", "{}", blind.report);
    assert_eq!(s.user_writes(), Vec::new(), "no write without the lease and the ledger");

    s.azurite.restart().await;
    s.converges().await;
}
