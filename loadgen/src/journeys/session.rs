//! A journey user's login, kept across journeys, as a real shopper keeps their token.
//!
//! Logging in costs the server an argon2 verification (tens of milliseconds of CPU),
//! so a journey that logged in every time would measure the password hash rather than
//! the journey. A [`Session`] logs in on first use, keeps the JWT, and logs in again
//! only when the token is near its expiry or was refused (a 401: the users service
//! restarted with another secret, or the token expired early). Journeys of the same
//! user that need a token while it is being fetched wait for that one login instead
//! of each starting their own. The `login` journey still logs in every time, so the
//! login rate can be measured on its own.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use serde::Deserialize;

/// A token is renewed this long before it expires (or at half its lifetime, if that is
/// shorter): a request that starts with it may outlive it (an order-view long-poll
/// waits up to 30 s).
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// A bearer token and when to renew it.
#[derive(Debug, Clone)]
pub struct Token {
    pub jwt: Arc<str>,
    /// `None`: the token does not say when it expires; it is used until refused.
    renew_at: Option<SystemTime>,
}

impl Token {
    /// A token as the users service issued it; its expiry is read from the JWT's
    /// claims (`exp`, and `iat` for the lifetime), not checked: the server does that.
    pub fn new(jwt: &str) -> Token {
        #[derive(Deserialize)]
        struct Claims {
            exp: Option<u64>,
            iat: Option<u64>,
        }
        let claims = jwt
            .split('.')
            .nth(1)
            .and_then(|payload| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .ok()
            })
            .and_then(|json| serde_json::from_slice::<Claims>(&json).ok());
        let renew_at = claims.and_then(|claims| {
            let exp = claims.exp?;
            let lifetime = Duration::from_secs(exp.saturating_sub(claims.iat.unwrap_or(0)));
            let margin = RENEW_BEFORE_EXPIRY.min(lifetime / 2);
            UNIX_EPOCH.checked_add(Duration::from_secs(exp).saturating_sub(margin))
        });
        Token {
            jwt: jwt.into(),
            renew_at,
        }
    }

    /// Whether it can still be used at `now`.
    pub fn fresh(&self, now: SystemTime) -> bool {
        self.renew_at.is_none_or(|renew_at| now < renew_at)
    }
}

/// One user's login. A Tokio mutex, held across the login itself on purpose: the
/// other journeys of the user wait for that login rather than each logging in.
#[derive(Debug, Default)]
pub struct Session {
    token: tokio::sync::Mutex<Option<Token>>,
}

impl Session {
    /// The kept token if it is fresh; otherwise `login` runs (and only then: a future
    /// does nothing until awaited) and its token is kept. `None` when the login failed.
    pub async fn token(&self, login: impl Future<Output = Option<Token>>) -> Option<Arc<str>> {
        let mut kept = self.token.lock().await;
        if let Some(token) = kept.as_ref().filter(|t| t.fresh(SystemTime::now())) {
            return Some(token.jwt.clone());
        }
        let token = login.await?;
        let jwt = token.jwt.clone();
        *kept = Some(token);
        Some(jwt)
    }

    /// Keeps a token from a login made elsewhere (the `login` journey's).
    pub async fn keep(&self, token: Token) {
        *self.token.lock().await = Some(token);
    }

    /// Forgets `refused`, unless another journey has already replaced it.
    pub async fn forget(&self, refused: &str) {
        let mut kept = self.token.lock().await;
        if kept.as_ref().is_some_and(|t| &*t.jwt == refused) {
            *kept = None;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        format!(
            "{}.{}.signature",
            encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            encode(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn a_token_is_renewed_a_minute_before_it_expires() {
        let token = Token::new(&jwt(serde_json::json!({"iat": 1000, "exp": 4600})));
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert!(token.fresh(at(4539)));
        assert!(!token.fresh(at(4540)));
        // A short-lived token is renewed at half its life, not at once.
        let short = Token::new(&jwt(serde_json::json!({"iat": 1000, "exp": 1030})));
        assert!(short.fresh(at(1014)));
        assert!(!short.fresh(at(1015)));
        // A token whose expiry cannot be read is used until refused.
        assert!(Token::new("opaque").fresh(at(u32::MAX as u64)));
    }

    #[tokio::test]
    async fn journeys_of_one_user_log_in_once_until_the_token_is_refused() {
        let session = Arc::new(Session::default());
        let logins = Arc::new(AtomicU32::new(0));
        let login = || {
            let logins = logins.clone();
            async move {
                let n = logins.fetch_add(1, Ordering::SeqCst);
                // Slow, so the concurrent journeys all ask while it runs.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some(Token::new(&format!("token-{n}")))
            }
        };
        let mut asking = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let session = session.clone();
            let login = login();
            asking.spawn(async move { session.token(login).await });
        }
        while let Some(token) = asking.join_next().await {
            assert_eq!(token.unwrap().as_deref(), Some("token-0"));
        }
        assert_eq!(logins.load(Ordering::SeqCst), 1);

        session.forget("token-0").await;
        assert_eq!(session.token(login()).await.as_deref(), Some("token-1"));
        // A refusal of a token already replaced does not throw the new one away.
        session.forget("token-0").await;
        assert_eq!(session.token(login()).await.as_deref(), Some("token-1"));
        assert_eq!(logins.load(Ordering::SeqCst), 2);
    }
}
