//! Change notifications: `WEBHOOK_NOTIFICATION_URL` (its function key kept secret), `WEBHOOK_CLIENT_STATE` and
//! `WEBHOOK_PREVIOUS_CLIENT_STATE`.

use std::fmt;

use secrecy::SecretString;
use url::Url;

use super::Reader;
use super::names::*;

/// Webhook (change notification) settings.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// The `clientState` every subscription is created with; notifications carrying anything else are dropped.
    pub client_state: Option<SecretString>,
    /// The previous secret, still accepted while subscriptions are renewed onto the new one.
    pub previous_client_state: Option<SecretString>,
    /// Where Graph posts change and lifecycle notifications (`function-webhook`'s URL with `?code=<function key>`).
    /// Set: the timer (and `certsync subscriptions`) keep a subscription alive on every configured group.
    pub notification_url: Option<NotificationUrl>,
}

/// The webhook's public URL. It carries the function key in its query (`?code=…`): a secret, so `Debug` and
/// `Display` show only scheme, host and path.
#[derive(Clone, PartialEq, Eq)]
pub struct NotificationUrl(Url);

impl NotificationUrl {
    /// HTTPS only, as Graph requires [subscription-post-subscriptions]; plain http is accepted for loopback hosts
    /// (`func start` on a workstation, the Graph emulator), which Graph itself could never reach anyway.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text.trim()).map_err(|e| format!("must be an absolute https URL ({e})"))?;
        let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            other => return Err(format!("must be an https URL (Graph refuses other schemes), not {other}://…")),
        }
        if url.host_str().is_none_or(str::is_empty) || url.fragment().is_some() {
            return Err("must be an https URL with a host and no #fragment".to_owned());
        }
        Ok(Self(url))
    }

    /// The full URL, key included: only for Graph requests.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Scheme, host, port and path: safe to log.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        let had_query = url.query().is_some();
        url.set_query(None);
        let _ = url.set_password(None);
        if had_query { format!("{url}?[redacted]") } else { url.to_string() }
    }
}

impl fmt::Debug for NotificationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NotificationUrl({})", self.redacted())
    }
}

impl fmt::Display for NotificationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Reads the webhook settings; a notification URL needs the clientState its subscriptions are created with.
pub(super) fn read(r: &mut Reader<'_>) -> WebhookSettings {
    let notification_value = r.optional(WEBHOOK_NOTIFICATION_URL);
    let notification_url = r.parsed(WEBHOOK_NOTIFICATION_URL, notification_value, NotificationUrl::parse);
    if notification_url.is_some() && r.optional(WEBHOOK_CLIENT_STATE).is_none() {
        r.problem(
            WEBHOOK_CLIENT_STATE,
            "is required when WEBHOOK_NOTIFICATION_URL is set: every subscription is created with it, and \
             notifications without it are dropped",
        );
    }
    let webhook = WebhookSettings {
        client_state: r.optional(WEBHOOK_CLIENT_STATE).map(SecretString::from),
        previous_client_state: r.optional(WEBHOOK_PREVIOUS_CLIENT_STATE).map(SecretString::from),
        notification_url,
    };
    for name in [WEBHOOK_CLIENT_STATE, WEBHOOK_PREVIOUS_CLIENT_STATE] {
        // Graph limits clientState to 128 characters [subscription-post-subscriptions].
        if r.optional(name).is_some_and(|v| v.chars().count() > 128) {
            r.problem(name, "must be at most 128 characters (Graph's clientState limit)");
        }
    }
    webhook
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::config::tests::minimal;

    #[test]
    fn the_notification_url_must_be_https_and_its_function_key_never_shows() {
        let mut env = minimal();
        env.insert(
            "WEBHOOK_NOTIFICATION_URL".into(),
            "https://app.azurewebsites.net/api/function-webhook?code=k3y".into(),
        );
        env.insert("WEBHOOK_CLIENT_STATE".into(), "state".into());
        let s = Settings::load(&env).unwrap();
        let url = s.webhook.notification_url.as_ref().unwrap();
        assert_eq!(url.expose(), "https://app.azurewebsites.net/api/function-webhook?code=k3y");
        let shown = format!("{url} {url:?} {s:?}");
        assert!(!shown.contains("k3y"), "{shown}");
        assert!(shown.contains("https://app.azurewebsites.net/api/function-webhook?[redacted]"), "{shown}");

        // Loopback http is for func start and the emulator; anything else must be https.
        assert!(NotificationUrl::parse("http://127.0.0.1:7071/api/function-webhook").is_ok());
        for bad in ["http://app.azurewebsites.net/api/x", "ftp://x/y", "/api/function-webhook", "https://x/y#f"] {
            env.insert("WEBHOOK_NOTIFICATION_URL".into(), bad.into());
            let err = Settings::load(&env).unwrap_err();
            assert_eq!(err.problems[0].name, "WEBHOOK_NOTIFICATION_URL", "{bad}: {err}");
        }

        // The URL needs the clientState the subscriptions are created with.
        env.insert("WEBHOOK_NOTIFICATION_URL".into(), "https://app.azurewebsites.net/api/function-webhook".into());
        env.remove("WEBHOOK_CLIENT_STATE");
        let err = Settings::load(&env).unwrap_err();
        assert_eq!(err.problems[0].name, "WEBHOOK_CLIENT_STATE", "{err}");
    }
}
