//! HS256 JWTs signed with a key generated at start: the emulator's access tokens and federated assertions.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The claims the emulator puts in its tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    /// The tenant; Graph serves the request in this tenant.
    pub tid: String,
    /// Client id of the app or managed identity.
    pub appid: String,
    /// Object id of the service principal (or managed identity).
    pub oid: String,
    /// The subject: equals `oid` for app tokens.
    pub sub: String,
    /// Application permissions.
    #[serde(default)]
    pub roles: Vec<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(default)]
    pub idtyp: Option<String>,
    #[serde(default)]
    pub ver: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token signature is invalid")]
    BadSignature,
}

#[derive(Clone)]
pub(crate) struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"graph-emulator"}"#;

impl Signer {
    pub(crate) fn random() -> Self {
        let key: [u8; 32] = rand::random();
        Self { key: key.to_vec() }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("hmac takes any key length"))
    }

    pub(crate) fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(HEADER);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Checks the signature and decodes the claims; lifetimes and audiences are the caller's to check.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| JwtError::Malformed)?;
        let mut mac = self.mac();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).map_err(|_| JwtError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| JwtError::Malformed)?;
        serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            aud: "https://graph.microsoft.com".into(),
            iss: "https://sts.windows.net/t/".into(),
            tid: "t".into(),
            appid: "a".into(),
            oid: "o".into(),
            sub: "o".into(),
            roles: vec!["User.Read.All".into()],
            iat: 1,
            nbf: 1,
            exp: 2,
            idtyp: Some("app".into()),
            ver: Some("1.0".into()),
        }
    }

    #[test]
    fn a_signed_token_verifies_and_round_trips() {
        let signer = Signer::random();
        let token = signer.sign(&claims());
        assert_eq!(signer.verify(&token), Ok(claims()));
    }

    #[test]
    fn another_key_or_a_tampered_token_is_refused() {
        let token = Signer::random().sign(&claims());
        assert_eq!(Signer::random().verify(&token), Err(JwtError::BadSignature));
        assert_eq!(Signer::random().verify("a.b"), Err(JwtError::Malformed));
    }
}
