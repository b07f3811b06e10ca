//! Bearer tokens: HS256 JWTs that the users service issues at login and the gateway checks
//! (signature and expiry) on every request. Both share one secret, held in a type that never
//! prints.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A secret that `Debug` and `Display` do not reveal.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the secret is too short: use at least 32 bytes")]
    WeakSecret,
}

/// Signs and checks tokens with one HS256 secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Tokens {
    pub fn new(secret: &Secret, ttl: Duration) -> Result<Tokens, AuthError> {
        let bytes = secret.expose().as_bytes();
        if bytes.len() < 32 {
            return Err(AuthError::WeakSecret);
        }
        Ok(Tokens {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            ttl,
        })
    }

    /// A token for `user_id`, valid for the configured time.
    pub fn issue(&self, user_id: Uuid) -> Result<String, AuthError> {
        let iat = now();
        let claims = Claims {
            sub: user_id.to_string(),
            iat,
            exp: iat + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// The user a token names, if its signature holds and it has not expired. A token that
    /// is not valid says which part is wrong (its shape, the header, the signature or the
    /// claims), so that a client's mistake can be found from the answer alone.
    pub fn validate(&self, token: &str) -> Result<Uuid, AuthError> {
        let parts = token.split('.').count();
        if parts != 3 {
            return Err(AuthError::Invalid(format!(
                "expected header.claims.signature, found {parts} part(s)"
            )));
        }
        jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("header: {e}")))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::InvalidAlgorithm => {
                        AuthError::Invalid(format!("header: {e} (HS256 is taken)"))
                    }
                    // The signature is checked before the claims are read, so a base64
                    // error here is the signature's unless the signature held.
                    ErrorKind::InvalidSignature | ErrorKind::Base64(_) => {
                        AuthError::Invalid(format!("signature: {e}"))
                    }
                    _ => AuthError::Invalid(format!("claims: {e}")),
                }
            })?;
        Uuid::parse_str(&data.claims.sub)
            .map_err(|_| AuthError::Invalid("claims: sub is not a user id".into()))
    }

    /// A token that expired a minute ago (for tests of expiry).
    pub fn issue_expired(&self, user_id: Uuid) -> Result<String, AuthError> {
        let iat = now().saturating_sub(3600);
        let claims = Claims {
            sub: user_id.to_string(),
            iat,
            exp: iat + 3540,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str) -> Tokens {
        Tokens::new(&Secret::new(secret), Duration::from_secs(60)).expect("a long secret")
    }

    #[test]
    fn a_token_names_its_user_until_it_expires() {
        let tokens = tokens("0123456789abcdef0123456789abcdef");
        let user = Uuid::new_v4();
        assert_eq!(
            tokens
                .validate(&tokens.issue(user).expect("issued"))
                .expect("valid"),
            user
        );
        let expired = tokens.issue_expired(user).expect("issued");
        assert!(matches!(tokens.validate(&expired), Err(AuthError::Expired)));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let forged = tokens("another secret that is long enough!!")
            .issue(Uuid::new_v4())
            .expect("issued");
        let ours = tokens("0123456789abcdef0123456789abcdef");
        assert!(matches!(ours.validate(&forged), Err(AuthError::Invalid(_))));
        assert!(matches!(
            ours.validate("not.a.jwt"),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn secrets_do_not_print_and_short_ones_are_refused() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
        assert!(matches!(
            Tokens::new(&Secret::new("short"), Duration::from_secs(1)),
            Err(AuthError::WeakSecret)
        ));
    }
}
