//! State shared by every handler of both listeners.

use std::sync::Mutex;
use std::time::Duration;

use url::Url;

use crate::directory::Directory;
use crate::faults::FaultState;
use crate::jwt::Signer;
use crate::options::{Refill, Throttling};

#[derive(Debug)]
pub(crate) struct AppState {
    pub directory: Directory,
    pub signer: Signer,
    pub latency: Duration,
    pub throttling: Throttling,
    pub refill: Refill,
    pub allow_http_notification_urls: bool,
    pub delivery_delay: Duration,
    pub faults: Mutex<FaultState>,
    /// `https://127.0.0.1:Q/`: the authority of issued assertions.
    pub https_base: Url,
    /// The `X-IDENTITY-HEADER` secret of the managed identity endpoint.
    pub msi_header: String,
    /// For validation handshakes and change notifications.
    pub client: reqwest::Client,
}

/// The base URL a request came in on (`http://…/` or `https://…/`): next links point back at it.
#[derive(Debug, Clone)]
pub(crate) struct BaseUrl(pub Url);
