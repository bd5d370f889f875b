//! One invocation at the HTTP edge: the [`Invocation`] extractor that reads the envelope the host posts, the
//! [`InvocationRejection`] that answers when there is none, and [`InvocationResponse`] as the answer.
//!
//! A rejected envelope is still answered in the host's JSON shape, with a non-2xx status, so the reason reaches the
//! host's log (functions-custom-handlers: always answer `{"Outputs","Logs","ReturnValue"}`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::envelope::{EnvelopeError, InvocationRequest, InvocationResponse};

/// The host's header carrying the invocation id (host source `HttpWorkerConstants`).
const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";

/// Envelopes carry the webhook body as a string inside JSON; the webhook itself caps the body it accepts
/// (`webhook::MAX_NOTIFICATION_BODY_BYTES`), this only bounds what the server buffers.
pub(super) const MAX_ENVELOPE_BYTES: usize = 8 * 1024 * 1024;

/// The invocation id the host sent, or `none`.
pub(super) fn invocation_id(headers: &HeaderMap) -> String {
    headers.get(INVOCATION_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned()
}

/// A `POST /<function>` from the host: its invocation id and its envelope, parsed.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `x-azure-functions-invocationid`, or `none`.
    pub id: String,
    pub request: InvocationRequest,
}

impl<S: Send + Sync> FromRequest<S> for Invocation {
    type Rejection = InvocationRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let id = invocation_id(request.headers());
        let body = Bytes::from_request(request, state).await.map_err(|rejection| {
            // Over the `DefaultBodyLimit` the router sets (MAX_ENVELOPE_BYTES), or a body that could not be read.
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                let limit_mib = MAX_ENVELOPE_BYTES / (1024 * 1024);
                InvocationRejection {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    error: EnvelopeError::TooLarge { limit_mib },
                }
            } else {
                InvocationRejection {
                    status: rejection.status(),
                    error: EnvelopeError::Unreadable(rejection.body_text()),
                }
            }
        })?;
        let request = serde_json::from_slice(&body).map_err(|e| InvocationRejection {
            status: StatusCode::BAD_REQUEST,
            error: EnvelopeError::NotJson(e.to_string()),
        })?;
        Ok(Self { id, request })
    }
}

/// Why a request is not an invocation, and the status that fails it: the body is over [`MAX_ENVELOPE_BYTES`] (413),
/// cannot be read, or is not an envelope (400).
#[derive(Debug)]
pub struct InvocationRejection {
    status: StatusCode,
    error: EnvelopeError,
}

impl IntoResponse for InvocationRejection {
    fn into_response(self) -> Response {
        let Self { status, error } = self;
        tracing::error!(%error, "rejected invocation");
        let mut response = InvocationResponse::default();
        response.log(error.to_string());
        (status, response).into_response()
    }
}

/// The answer to an invocation; a handler returns `(StatusCode, InvocationResponse)`: non-2xx fails the invocation.
impl IntoResponse for InvocationResponse {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use serde_json::{Value, json};

    use super::*;

    fn post(id: Option<&str>, body: impl Into<Body>) -> Request {
        let mut builder = Request::post("/function-cert-sync");
        if let Some(id) = id {
            builder = builder.header(INVOCATION_ID_HEADER, id);
        }
        builder.body(body.into()).unwrap()
    }

    #[tokio::test]
    async fn an_invocation_carries_the_hosts_id_and_its_envelope() {
        let envelope = json!({"Data": {"timer": {"IsPastDue": false}}, "Metadata": {"sys": {}}}).to_string();
        let invocation = Invocation::from_request(post(Some("0f1e"), envelope.clone()), &()).await.unwrap();
        assert_eq!(invocation.id, "0f1e");
        assert!(invocation.request.trigger("timer").is_some(), "{:?}", invocation.request);

        let invocation = Invocation::from_request(post(None, envelope), &()).await.unwrap();
        assert_eq!(invocation.id, "none", "no header, no id");
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_envelope_is_refused_with_400_in_the_hosts_json_shape() {
        let rejection = Invocation::from_request(post(Some("0f1e"), "not json"), &()).await.unwrap_err();
        let response = rejection.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = serde_json::from_slice(&to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap();
        assert_eq!(body["Outputs"], json!({}), "{body}");
        assert_eq!(body["ReturnValue"], Value::Null, "{body}");
        let log = body["Logs"][0].as_str().unwrap_or_default();
        assert!(log.contains("not the Functions envelope JSON"), "{body}");
    }
}
