//! An Azurite blob emulator that can be stopped and started again on the same port with the same data: a storage
//! outage, not a storage loss.
//!
//! [`crate::azurite::Azurite`] (tests/support/azurite.rs) kills its process for good; a test of an outage needs the
//! service back where the product expects it, holding what it held. Azure Storage never forgets an acknowledged
//! write, so the stop is graceful: Azurite keeps its blob metadata in a LokiJS file saved every 5 s and on
//! `SIGTERM`, and a `SIGKILL` could lose the last seconds of writes (the ledger), which would test a loss Azure does
//! not have.
//!
//! The executable is `$AZURITE_BIN`, else `<crate>/.tools/node_modules/.bin/azurite-blob` (what `scripts/test`
//! installs), as in tests/support/azurite.rs.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's well-known development account and its (public) key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// A running (or stopped) `azurite-blob` with a fixed port and workspace.
pub struct RestartableAzurite {
    child: Option<Child>,
    port: u16,
    workspace: PathBuf,
}

impl RestartableAzurite {
    /// Starts Azurite on a free port with a fresh workspace and waits until it listens.
    pub async fn start() -> Self {
        let workspace = std::env::temp_dir().join(format!("certsync-azurite-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&workspace).expect("create the Azurite workspace directory");
        let port = free_port();
        let mut azurite = Self { child: None, port, workspace };
        azurite.restart().await;
        azurite
    }

    /// Starts the process again (same port, same workspace); no-op while it runs.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            return;
        }
        let bin = azurite_bin();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.workspace.join("azurite.out"))
            .expect("open the Azurite output file");
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &self.port.to_string(), "--location"])
            .arg(&self.workspace)
            .args(["--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the output file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {}: {error}", bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).await.is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                panic!("Azurite exited during start-up ({status}):\n{}", self.output());
            }
            assert!(Instant::now() < deadline, "Azurite did not listen on {} in time:\n{}", self.port, self.output());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process gracefully (`SIGTERM`: Azurite saves its metadata and closes) and waits until it has
    /// exited; the port then refuses connections. Idempotent.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.wait();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(self.workspace.join("azurite.out")).unwrap_or_default()
    }

    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint=http://127.0.0.1:{}/{ACCOUNT}",
            self.port
        )
    }
}

impl Drop for RestartableAzurite {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.workspace);
    }
}

fn azurite_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("AZURITE_BIN").filter(|bin| !bin.is_empty()) {
        return PathBuf::from(bin);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules/.bin/azurite-blob");
    assert!(local.exists(), "Azurite not found: set AZURITE_BIN or run the tests with scripts/test");
    local
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    listener.local_addr().expect("local address of the listener").port()
}
