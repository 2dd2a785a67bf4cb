//! When each user last used a token (userinfo, refresh, token exchange), for the activity
//! report. These are the benchmarked hot paths, so a use is written at most once per
//! [`TOKEN_USE_RESOLUTION`] per user and process, off the request's path: the answer never waits
//! for it, and a failed write only costs that minute's precision.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::app::AppState;
use crate::clock::UnixTime;
use crate::store::TOKEN_USE_RESOLUTION;

/// Beyond this many users remembered, the memory starts over (each user then writes once more).
const MAX_REMEMBERED: usize = 100_000;

#[derive(Default)]
pub struct TokenUse {
    last_written: Mutex<HashMap<String, UnixTime>>,
}

impl TokenUse {
    /// Whether a use by `user_id` at `now` should be written; remembers it if so.
    fn due(&self, user_id: &str, now: UnixTime) -> bool {
        let mut last = self.last_written.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(user_id) {
            Some(at) if now - *at < TOKEN_USE_RESOLUTION => false,
            Some(at) => {
                *at = now;
                true
            }
            None => {
                if last.len() >= MAX_REMEMBERED {
                    last.clear();
                }
                last.insert(user_id.to_owned(), now);
                true
            }
        }
    }
}

/// Notes that `user_id` just used a token.
pub fn note(state: &AppState, user_id: &str) {
    let now = state.clock.now();
    if !state.token_use.due(user_id, now) {
        return;
    }
    let (store, user_id) = (state.store.clone(), user_id.to_owned());
    tokio::spawn(async move {
        if let Err(e) = store.note_token_use(&user_id, now).await {
            tracing::warn!(error = %e, "could not record a token use");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_written_at_most_once_a_minute() {
        let t = TokenUse::default();
        assert!(t.due("ada", 1000));
        assert!(!t.due("ada", 1000 + TOKEN_USE_RESOLUTION - 1));
        assert!(t.due("grace", 1001), "another user is not held back");
        assert!(t.due("ada", 1000 + TOKEN_USE_RESOLUTION));
        assert!(!t.due("ada", 1000 + TOKEN_USE_RESOLUTION + 5));
    }
}
