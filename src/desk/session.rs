//! Desk sessions (登录会话).
//!
//! Logging in exchanges the long-lived access token for an opaque session
//! id: 32 bytes from the operating system's random source, kept only in
//! this process's memory with an expiry. The cookie carries that id, never
//! the token. Logging out removes the session; a reload that revokes a
//! token ends its sessions at once, and a changed role applies at the next
//! request, because a session resolves to its user through the token every
//! time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Open sessions at most; the oldest is dropped beyond this.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug)]
struct Session {
    token: String,
    expires: Instant,
}

/// The open sessions of one desk.
#[derive(Debug)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
    ttl: Duration,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Opens a session for a checked token; returns its id. Fails only
    /// when the system has no random source.
    pub fn open(&self, token: &str) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let id = hex::encode(bytes);
        let now = Instant::now();
        let mut open = self.open.lock().expect("sessions lock");
        open.retain(|_, s| s.expires > now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            open.remove(&oldest);
        }
        open.insert(
            id.clone(),
            Session {
                token: token.to_owned(),
                expires: now + self.ttl,
            },
        );
        Ok(id)
    }

    /// The token behind a live session.
    pub fn token(&self, id: &str) -> Option<String> {
        let mut open = self.open.lock().expect("sessions lock");
        match open.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.token.clone()),
            Some(_) => {
                open.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session (logout).
    pub fn close(&self, id: &str) {
        self.open.lock().expect("sessions lock").remove(id);
    }

    /// Ends every session whose token `still_valid` refuses; returns how
    /// many ended.
    pub fn retain_tokens(&self, still_valid: impl Fn(&str) -> bool) -> usize {
        let mut open = self.open.lock().expect("sessions lock");
        let before = open.len();
        open.retain(|_, s| still_valid(&s.token));
        before - open.len()
    }

    pub fn len(&self) -> usize {
        self.open.lock().expect("sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_is_random_opaque_and_ends_at_logout_and_on_revocation() {
        let s = Sessions::new(Duration::from_secs(60));
        let a = s.open("officer-token-0000000001").unwrap();
        let b = s.open("officer-token-0000000001").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(!a.contains("officer"));
        assert_eq!(s.token(&a).as_deref(), Some("officer-token-0000000001"));
        s.close(&a);
        assert_eq!(s.token(&a), None);
        assert_eq!(s.retain_tokens(|t| t != "officer-token-0000000001"), 1);
        assert_eq!(s.token(&b), None);
    }

    #[test]
    fn an_expired_session_is_gone() {
        let s = Sessions::new(Duration::ZERO);
        let a = s.open("t").unwrap();
        assert_eq!(s.token(&a), None);
        assert!(s.is_empty());
    }
}
