//! The console's sessions: held in this process's memory, found by a random
//! 256-bit id that only the browser's cookie carries (never the API key).
//! Each session holds the caller its key was (merchant, key name, role), a
//! CSRF token of its own, and ends after [`IDLE_SECS`] without a request or
//! [`ABSOLUTE_SECS`] after sign-in, whichever comes first. Time is passed
//! in (the runtime's clock), so the expiry rules are tested without waiting.
//!
//! Sessions are kept by the SHA-256 of their id: the map is never searched
//! with the secret itself, and a memory dump shows no usable id. A restart
//! signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::Caller;

/// A session ends this long after its last request.
pub const IDLE_SECS: i64 = 8 * 60 * 60;
/// A session ends this long after sign-in, however busy.
pub const ABSOLUTE_SECS: i64 = 12 * 60 * 60;
/// The most sessions held at once; signing in past it ends the oldest.
pub const SESSIONS_MAX: usize = 10_000;

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    /// Sent in a hidden field of every form that changes something.
    pub csrf_token: String,
    pub signed_in_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        let expected = self.csrf_token.as_bytes();
        expected.len() == presented.len() && bool::from(expected.ct_eq(presented.as_bytes()))
    }

    fn expired(&self, now: DateTime<Utc>) -> bool {
        now - self.last_seen_at >= Duration::seconds(IDLE_SECS)
            || now - self.signed_in_at >= Duration::seconds(ABSOLUTE_SECS)
    }
}

/// Every session of this process.
#[derive(Debug, Default)]
pub struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
}

/// 32 bytes from the operating system's CSPRNG, as 64 hex digits.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Starts a session for `caller`; returns its id (the cookie's value).
    pub fn create(&self, caller: Caller, now: DateTime<Utc>) -> String {
        let id = random_token();
        let session = Session {
            caller,
            csrf_token: random_token(),
            signed_in_at: now,
            last_seen_at: now,
        };
        let mut sessions = self.lock();
        sessions.retain(|_, session| !session.expired(now));
        if sessions.len() >= SESSIONS_MAX
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.signed_in_at)
                .map(|(key, _)| *key)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(digest(&id), session);
        id
    }

    /// The live session of `id`, its idle time restarted; `None` (and
    /// forgotten) once expired.
    pub fn get(&self, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let key = digest(id);
        let mut sessions = self.lock();
        let session = sessions.get_mut(&key)?;
        if session.expired(now) {
            sessions.remove(&key);
            return None;
        }
        session.last_seen_at = session.last_seen_at.max(now);
        Some(session.clone())
    }

    /// Ends the session of `id` (signing out).
    pub fn remove(&self, id: &str) {
        self.lock().remove(&digest(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use paycode_domain::MerchantId;

    use super::*;
    use crate::http::Role;

    fn caller() -> Caller {
        Caller {
            merchant: MerchantId::parse("demo").unwrap(),
            key_name: "audit-team".to_owned(),
            role: Role::Auditor,
        }
    }

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 1, 0, 0).unwrap()
    }

    #[test]
    fn a_session_is_found_by_its_id_only_and_ends_on_sign_out() {
        // Shows that ids are 256 random bits, distinct, with a token of their
        // own, and that another or a removed id finds nothing.
        let sessions = Sessions::default();
        let first = sessions.create(caller(), start());
        let second = sessions.create(caller(), start());
        assert_eq!(first.len(), 64);
        assert_ne!(first, second);
        let session = sessions.get(&first, start()).unwrap();
        assert_eq!(session.caller, caller());
        assert_eq!(session.csrf_token.len(), 64);
        assert_ne!(session.csrf_token, first);
        assert!(sessions.get(&first[..63], start()).is_none());
        sessions.remove(&first);
        assert!(sessions.get(&first, start()).is_none());
        assert!(sessions.get(&second, start()).is_some());
    }

    #[test]
    fn a_session_ends_after_8_idle_hours_or_12_hours_in_all() {
        // Shows both limits on the clock: a request just before the idle
        // limit keeps the session, at the limit it is gone; a busy session
        // still ends 12 h after sign-in.
        let sessions = Sessions::default();
        let id = sessions.create(caller(), start());
        let almost_idle = start() + Duration::seconds(IDLE_SECS - 1);
        assert!(sessions.get(&id, almost_idle).is_some());
        let idle = almost_idle + Duration::seconds(IDLE_SECS);
        assert!(sessions.get(&id, idle).is_none());
        assert!(
            sessions.get(&id, almost_idle).is_none(),
            "an expired session is forgotten"
        );

        let busy = sessions.create(caller(), start());
        let mut now = start();
        while now < start() + Duration::seconds(ABSOLUTE_SECS - 3600) {
            now += Duration::seconds(3600);
            assert!(sessions.get(&busy, now).is_some(), "{now}");
        }
        assert!(
            sessions
                .get(&busy, start() + Duration::seconds(ABSOLUTE_SECS))
                .is_none()
        );
    }

    #[test]
    fn the_csrf_token_must_match_exactly() {
        let sessions = Sessions::default();
        let id = sessions.create(caller(), start());
        let session = sessions.get(&id, start()).unwrap();
        let token = session.csrf_token.clone();
        assert!(session.csrf_matches(&token));
        assert!(!session.csrf_matches(&token[..63]));
        assert!(!session.csrf_matches(""));
        let mut other = token.clone().into_bytes();
        other[0] = if other[0] == b'0' { b'1' } else { b'0' };
        assert!(!session.csrf_matches(&String::from_utf8(other).unwrap()));
    }
}
