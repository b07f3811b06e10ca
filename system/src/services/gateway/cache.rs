//! The gateway's shared cache of public responses, as an HTTP cache in front of an API
//! does it: a `GET` on a route that needs no token, answered 200 with
//! `Cache-Control: public, max-age=N`, is kept for N seconds and answered from memory,
//! so a catalogue read costs one hop instead of two plus a database query.
//!
//! The upstream decides what may be cached and for how long (inventory says one second of
//! its products: stock shown may be that old, the reservation itself is always checked
//! against the database). A request with `Cache-Control: no-cache` goes upstream and
//! refreshes the entry. Entries are bounded in number and size; when full, expired entries
//! are swept, and if none expired the new response is simply not kept.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{AGE, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

/// Says whether an answer came from the cache (`hit`) or upstream (`miss`).
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// The largest body kept; bigger ones pass through uncached.
pub const MAX_BODY: usize = 1 << 20;

#[derive(Debug)]
struct Entry {
    content_type: Option<HeaderValue>,
    body: Bytes,
    stored: Instant,
    max_age: Duration,
}

/// Fresh public responses by path and query.
#[derive(Debug)]
pub struct ResponseCache {
    entries: RwLock<HashMap<String, Entry>>,
    max_entries: usize,
}

impl ResponseCache {
    /// A cache of at most `max_entries` responses; 0 keeps none.
    pub fn new(max_entries: usize) -> ResponseCache {
        ResponseCache {
            entries: RwLock::new(HashMap::new()),
            max_entries,
        }
    }

    /// Whether a request may be answered from the cache: it does not ask to revalidate.
    pub fn may_serve(&self, request_headers: &HeaderMap) -> bool {
        self.max_entries > 0 && !directives(request_headers).any(|d| d == "no-cache")
    }

    /// The fresh response kept for `key`, marked as a hit with its age.
    pub fn get(&self, key: &str) -> Option<Response> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(key)?;
        let age = entry.stored.elapsed();
        if age >= entry.max_age {
            return None;
        }
        let mut response = Response::new(Body::from(entry.body.clone()));
        let headers = response.headers_mut();
        if let Some(content_type) = &entry.content_type {
            headers.insert(CONTENT_TYPE, content_type.clone());
        }
        headers.insert(AGE, HeaderValue::from(age.as_secs()));
        headers.insert(X_CACHE, HeaderValue::from_static("hit"));
        Some(response)
    }

    /// How long an upstream answer may be kept: a 200 marked `public, max-age=N`, N > 0,
    /// and neither `no-store` nor `private`.
    pub fn lifetime(&self, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        if self.max_entries == 0 || status != StatusCode::OK {
            return None;
        }
        let mut public = false;
        let mut max_age = None;
        for directive in directives(headers) {
            match directive.split_once('=') {
                Some(("max-age", seconds)) => max_age = seconds.trim().parse::<u64>().ok(),
                None if directive == "public" => public = true,
                None if directive == "no-store" || directive == "private" => return None,
                _ => {}
            }
        }
        let max_age = Duration::from_secs(max_age?);
        (public && !max_age.is_zero()).then_some(max_age)
    }

    /// Keeps `body` for `key` for `max_age`, room permitting.
    pub fn put(&self, key: String, headers: &HeaderMap, body: Bytes, max_age: Duration) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.max_entries && !entries.contains_key(&key) {
            entries.retain(|_, entry| entry.stored.elapsed() < entry.max_age);
            if entries.len() >= self.max_entries {
                return;
            }
        }
        entries.insert(
            key,
            Entry {
                content_type: headers.get(CONTENT_TYPE).cloned(),
                body,
                stored: Instant::now(),
                max_age,
            },
        );
    }
}

/// The `Cache-Control` directives of `headers`, lower-cased and trimmed.
fn directives(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|directive| directive.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cache_control: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_str(cache_control).expect("a header value"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers
    }

    #[test]
    fn only_public_200s_with_a_max_age_are_kept() {
        let cache = ResponseCache::new(10);
        let ok = StatusCode::OK;
        assert_eq!(
            cache.lifetime(ok, &headers("public, max-age=2")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            cache.lifetime(ok, &headers("max-age=2")),
            None,
            "not public"
        );
        assert_eq!(cache.lifetime(ok, &headers("public, max-age=0")), None);
        assert_eq!(
            cache.lifetime(ok, &headers("public, no-store, max-age=5")),
            None
        );
        assert_eq!(cache.lifetime(ok, &HeaderMap::new()), None);
        assert_eq!(
            cache.lifetime(StatusCode::NOT_FOUND, &headers("public, max-age=2")),
            None
        );
        assert_eq!(
            ResponseCache::new(0).lifetime(ok, &headers("public, max-age=2")),
            None,
            "a cache of no entries keeps nothing"
        );
    }

    #[test]
    fn a_kept_response_is_served_until_it_expires() {
        let cache = ResponseCache::new(10);
        let kept = headers("public, max-age=1");
        cache.put(
            "/products/1".into(),
            &kept,
            Bytes::from_static(b"{}"),
            Duration::from_millis(50),
        );
        let hit = cache.get("/products/1").expect("fresh");
        assert_eq!(hit.headers()[X_CACHE], "hit");
        assert_eq!(hit.headers()[CONTENT_TYPE], "application/json");
        assert!(cache.get("/products/2").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            cache.get("/products/1").is_none(),
            "served after its max-age"
        );
    }

    #[test]
    fn no_cache_in_the_request_goes_upstream() {
        let cache = ResponseCache::new(10);
        assert!(cache.may_serve(&HeaderMap::new()));
        assert!(!cache.may_serve(&headers("no-cache")));
    }

    #[test]
    fn a_full_cache_sweeps_expired_entries_and_otherwise_keeps_nothing_new() {
        let cache = ResponseCache::new(1);
        let kept = headers("public, max-age=1");
        cache.put("a".into(), &kept, Bytes::new(), Duration::from_millis(20));
        cache.put("b".into(), &kept, Bytes::new(), Duration::from_secs(60));
        assert!(cache.get("b").is_none(), "kept past the bound");
        std::thread::sleep(Duration::from_millis(30));
        cache.put("b".into(), &kept, Bytes::new(), Duration::from_secs(60));
        assert!(cache.get("b").is_some(), "the expired entry was not swept");
    }
}
