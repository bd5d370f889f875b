//! The webhook's query string: Graph's `?validationToken=` handshake (change-notifications-delivery-webhooks: answer
//! 200, `text/plain`, the decoded token as the body, within 10 s) and whatever else a caller appends.
//!
//! In envelope mode the host decodes the query into `Data.req.Query` (name → value; a repeated name's values joined
//! with `,` as ASP.NET Core's `StringValues` prints them [inferred]) and also passes the raw `Url`; the handler reads
//! `Query` first and falls back to the `Url`'s own query string.

use std::collections::BTreeMap;

use axum::http::Uri;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::harness::{
    CLIENT_STATE, Corpus, HostileApp, Reply, Tally, WEBHOOK_URL, declared_outcome, http_envelope, notification, runner,
    runtime,
};
use crate::strategies::hostile_string;

const FUNCTION: &str = "function-webhook";
/// `webhook::MAX_VALIDATION_TOKEN_CHARS`.
const MAX_TOKEN_CHARS: usize = 1024;

/// `Data.req.Query` as the host builds it from a raw query string: `&`-separated, `+` and `%XX` decoded, invalid
/// escapes kept as written, repeated names joined with `,` (ASP.NET Core `QueryHelpers`/`StringValues`) [inferred].
fn host_query(raw: &str) -> Value {
    let mut decoded: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        decoded.entry(name.into_owned()).or_default().push(value.into_owned());
    }
    Value::Object(decoded.into_iter().map(|(k, v)| (k, Value::from(v.join(",")))).collect())
}

/// The notification body sent with every request: when there is no token, the request is a notification.
fn notification_body() -> Value {
    Value::from(json!({"value": [notification(CLIENT_STATE, "g1")]}).to_string())
}

fn assert_echo(what: &str, reply: &Reply, token: &str) {
    assert_eq!(reply.status, 200, "{what}: {:.300}", reply.text);
    reply.assert_envelope(what);
    assert_eq!(reply.http_status(), "200", "{what}: {:.300}", reply.text);
    assert!(
        reply.http_body() == token,
        "{what}: the body must be the decoded token as is, got {:.200?}",
        reply.http_body()
    );
    let content_type = reply.json["Outputs"]["res"]["headers"]["Content-Type"].as_str().unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{what}: Graph requires text/plain, got {content_type:?}");
    assert_eq!(reply.queued(), 0, "{what}: a validation request queues nothing");
}

fn assert_too_long(what: &str, reply: &Reply) {
    assert_eq!(reply.status, 200, "{what}: {:.300}", reply.text);
    reply.assert_envelope(what);
    assert_eq!(reply.http_status(), "400", "{what}: {:.300}", reply.text);
    assert!(reply.http_body().contains("validationToken is longer than 1024"), "{what}: {:.300}", reply.http_body());
}

fn assert_notification(what: &str, reply: &Reply) {
    assert_eq!(reply.status, 200, "{what}: {:.300}", reply.text);
    reply.assert_envelope(what);
    assert_eq!(
        reply.http_status(),
        "202",
        "{what}: without a token the request is a notification: {:.300}",
        reply.text
    );
    assert_eq!(reply.queued(), 1, "{what}");
}

/// The answer for a token as the handler receives it.
fn assert_token(what: &str, reply: &Reply, token: Option<&str>) {
    match token {
        Some(token) if token.chars().count() > MAX_TOKEN_CHARS => assert_too_long(what, reply),
        Some(token) => assert_echo(what, reply, token),
        None => assert_notification(what, reply),
    }
}

#[test]
fn every_query_corpus_file_gets_its_declared_answer() {
    let corpus = Corpus::load("query", true);
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    for (name, bytes) in &corpus.files {
        let raw = std::str::from_utf8(bytes).unwrap_or_else(|_| panic!("query/{name}: a query string is text"));
        let raw = raw.strip_suffix('\n').unwrap_or(raw);
        let expected = corpus.expected(name);
        let outcome = expected["outcome"].as_str().expect("expect.json: outcome");
        assert_eq!(declared_outcome(name), outcome, "query/{name}: the file name's prefix disagrees with expect.json");
        let with_query = format!("{WEBHOOK_URL}?{raw}");
        let modes = [
            ("host-decoded Query", json!(WEBHOOK_URL), host_query(raw), "echo_host"),
            ("Url only", json!(with_query), json!({}), "echo_url"),
            ("both", json!(with_query), host_query(raw), "echo_host"),
        ];
        for (mode, url, query, override_key) in modes {
            let what = format!("query/{name} ({mode})");
            let envelope = json!({"Data": {"req": {"Url": url, "Method": "POST", "Query": query,
                "Headers": {"Content-Type": ["application/json"]}, "Body": notification_body()}}, "Metadata": {}});
            let reply = rt.block_on(app.invoke(FUNCTION, envelope.to_string()));
            match outcome {
                "echo" => {
                    let token = expected.get(override_key).or_else(|| expected.get("echo"));
                    match (token.and_then(Value::as_str), expected["echo_chars"].as_u64()) {
                        (Some(token), _) => assert_echo(&what, &reply, token),
                        (None, Some(chars)) => {
                            assert_echo(&what, &reply, reply.http_body());
                            assert_eq!(reply.http_body().chars().count() as u64, chars, "{what}");
                        }
                        (None, None) => panic!("query/{name}: expect.json needs echo or echo_chars"),
                    }
                }
                "reject" => assert_too_long(&what, &reply),
                "notification" => assert_notification(&what, &reply),
                other => panic!("query/{name}: unknown outcome {other:?}"),
            }
        }
        // The query on the handler's own request line is not the caller's (the host posts to `/<function>`): it
        // must not be mistaken for a validation request.
        let path = format!("/{FUNCTION}?{raw}");
        if Uri::try_from(path.as_str()).is_ok() {
            let envelope = http_envelope(WEBHOOK_URL, json!({}), Some("application/json"), notification_body());
            let reply = rt.block_on(app.invoke_at(&path, envelope.to_string()));
            assert_notification(&format!("query/{name} on the request line"), &reply);
        }
    }
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => hostile_string().prop_filter("a token Graph could send", |t| t.chars().count() <= 4 * MAX_TOKEN_CHARS),
        1 => Just("Validation: Testing client application reachability for subscription Request-Id: 1b3c".to_owned()),
        1 => (MAX_TOKEN_CHARS - 2..MAX_TOKEN_CHARS + 3).prop_map(|n| "t".repeat(n)),
        1 => (MAX_TOKEN_CHARS - 2..MAX_TOKEN_CHARS + 3).prop_map(|n| "é".repeat(n)),
    ]
}

#[test]
fn any_validation_token_is_echoed_exactly_however_it_was_encoded() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let seen = Tally::default();
    let encodings = prop::sample::select(vec!["form", "percent-all", "host-decoded"]);
    runner()
        .run(&(token(), encodings), |(token, encoding)| {
            let (url, query) = match encoding {
                "form" => {
                    let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
                    (format!("{WEBHOOK_URL}?code=k&validationToken={encoded}"), json!({}))
                }
                "percent-all" => {
                    let encoded = percent_encoding::utf8_percent_encode(&token, percent_encoding::NON_ALPHANUMERIC);
                    (format!("{WEBHOOK_URL}?validationToken={encoded}&code=k"), json!({}))
                }
                _ => (WEBHOOK_URL.to_owned(), json!({"validationToken": token, "code": "k"})),
            };
            let envelope = http_envelope(&url, query, None, Value::Null);
            let reply = rt.block_on(app.invoke(FUNCTION, envelope.to_string()));
            let what = format!("token {token:.200?} ({encoding})");
            if token.chars().count() > MAX_TOKEN_CHARS {
                seen.hit("too long");
            } else {
                seen.hit("echoed");
            }
            assert_token(&what, &reply, Some(&token));
            Ok(())
        })
        .unwrap();
    seen.assert_reached(&["echoed", "too long"]);
}

fn raw_query() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        4 => prop::sample::select(vec![
            "validationToken", "validationToken=", "=", "&", "&&", "%", "%Z", "%ZZ", "%FF", "%C3%28", "%00", "%2", "%25",
            "%26", "%3D", "+", "#", ";", "code=k", "é", "\0", " ", "\t", "\n", "a", "validationtoken", "VALIDATIONTOKEN",
            "?", "validationToken[]=", "%u0041",
        ])
        .prop_map(str::to_owned),
        1 => hostile_string().prop_filter("short", |s| s.len() < 64),
    ];
    prop::collection::vec(fragment, 0..30).prop_map(|parts| parts.concat())
}

#[test]
fn raw_query_strings_never_panic_and_the_host_decoded_token_decides_the_answer() {
    let rt = runtime();
    let app = rt.block_on(HostileApp::start());
    let seen = Tally::default();
    runner()
        .run(&raw_query(), |raw| {
            // What the host decoded decides, exactly.
            let query = host_query(&raw);
            let token = query.get("validationToken").and_then(Value::as_str).map(str::to_owned);
            let envelope = http_envelope(WEBHOOK_URL, query, Some("application/json"), notification_body());
            let reply = rt.block_on(app.invoke(FUNCTION, envelope.to_string()));
            assert_token(&format!("query {raw:?} (host-decoded)"), &reply, token.as_deref());
            seen.hit(if token.is_some() { "token" } else { "no token" });

            // The raw Url alone (the fallback): one of the three answers, each well formed.
            let envelope = http_envelope(
                &format!("{WEBHOOK_URL}?{raw}"),
                json!({}),
                Some("application/json"),
                notification_body(),
            );
            let reply = rt.block_on(app.invoke(FUNCTION, envelope.to_string()));
            let what = format!("query {raw:?} (Url only)");
            match reply.http_status() {
                "200" => assert_echo(&what, &reply, reply.http_body()),
                "400" => {
                    seen.hit("too long");
                    assert_too_long(&what, &reply)
                }
                _ => assert_notification(&what, &reply),
            }
            Ok(())
        })
        .unwrap();
    seen.assert_reached(&["token", "no token"]);
}
