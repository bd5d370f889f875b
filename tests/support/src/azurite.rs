//! A real Azurite blob emulator per test: a free loopback port, a fresh workspace directory, killed on drop; it can be
//! stopped (killed, or gracefully for an outage) and restarted on the same port with the same data.
//!
//! The executable comes from `$AZURITE_BIN` (set by `scripts/test`, which installs the npm package `azurite` into
//! `.tools/`), falling back to `<crate>/.tools/node_modules/.bin/azurite-blob`.

use std::{
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Azurite's well-known development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known (public) account key.
pub const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long Azurite may take to start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the process is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `azurite-blob` process.
pub struct Azurite {
    child: Option<Child>,
    port: u16,
    workspace: tempfile::TempDir,
}

impl Azurite {
    /// Start Azurite on a free port and wait until it accepts connections.
    pub async fn start() -> Azurite {
        let workspace = tempfile::Builder::new()
            .prefix("certsync-azurite-")
            .tempdir()
            .expect("create the Azurite workspace directory");
        let mut azurite = Azurite { child: None, port: free_port(), workspace };
        azurite.restart().await;
        azurite
    }

    /// Start the process (again: same port, same workspace, so the same data) and wait until it accepts
    /// connections; a no-op while it runs.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            return;
        }
        let bin = azurite_bin();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.workspace.path().join("azurite.out"))
            .expect("open the Azurite output file");
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &self.port.to_string(), "--location"])
            .arg(self.workspace.path())
            .args(["--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the output file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {}: {error}", bin.display()));
        self.child = Some(child);
        self.wait_until_listening().await;
    }

    /// Poll the port until Azurite accepts a connection; panic with its output if it exits or never does.
    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).await.is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                panic!("Azurite exited during start-up ({status}):\n{}", self.output());
            }
            if Instant::now() > deadline {
                panic!("Azurite did not listen on port {} within {STARTUP_TIMEOUT:?}:\n{}", self.port, self.output());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What Azurite printed (for failure messages).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.workspace.path().join("azurite.out")).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>/devstoreaccount1`
    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// A connection string for this instance.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={}",
            self.blob_endpoint()
        )
    }

    /// Kill the process (idempotent). The port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop the process the way a storage outage ends, not a storage loss (idempotent): `SIGTERM`, so Azurite saves
    /// its blob metadata (a LokiJS file otherwise saved only every 5 s) before it exits, and [`Self::restart`] finds
    /// every acknowledged write, as Azure Storage would. Waits until the process has exited.
    pub async fn stop_gracefully(&mut self) {
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
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `$AZURITE_BIN`, else the copy `scripts/test` installs under `.tools/`.
fn azurite_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("AZURITE_BIN").filter(|bin| !bin.is_empty()) {
        return PathBuf::from(bin);
    }
    // The project's root, two levels above this crate (tests/support).
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/node_modules/.bin/azurite-blob");
    if local.exists() {
        return local;
    }
    panic!(
        "Azurite not found: AZURITE_BIN is not set and {} does not exist. Run the tests with `scripts/test` \
         (it installs the npm package `azurite` into .tools/ and sets AZURITE_BIN).",
        local.display()
    );
}

/// A port that was free a moment ago: bind port 0, read the port, release it. Azurite needs its port before it starts,
/// and the same one again on a restart (so its clients keep their endpoint), so port 0 cannot be handed to it.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
    listener.local_addr().expect("local address of the listener").port()
}
