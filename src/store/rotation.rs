//! The refresh-token rules, kept out of the backends so both judge a presented token the same
//! way. The token is read once ([`Presented`], before the person is re-checked); the backend
//! asks [`judge`] and writes what the verdict says, with single use re-checked in its claiming
//! UPDATE. Only when that claim finds the token changed since it was read does the backend read
//! and judge it once more (a racing rotation, or a retry of a lost answer).

use crate::clock::UnixTime;
use crate::model::{Grant, User};

/// A refresh token as presented, with what the rules need to know about it.
#[derive(Debug, Clone)]
pub struct Presented {
    /// The token's storage key (its hash).
    pub token_hash: String,
    pub grant: Grant,
    pub user: User,
    pub used_at: Option<UnixTime>,
    pub expires_at: UnixTime,
    pub grant_revoked: bool,
    /// The token this one was rotated into, if it was.
    pub replaced_by: Option<String>,
    /// Whether that successor is still unused.
    pub successor_unused: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Unknown client, revoked grant or expired token: refuse and change nothing. (A token
    /// presented by another client is not reuse by its owner.)
    Invalid,
    /// An already-rotated token came back: two parties hold this login; revoke the family.
    Reuse,
    /// Rotate it. `lost_successor`: it was rotated moments ago (within the reuse grace) into this
    /// successor, still unused — the client most likely never got the answer, so the successor is
    /// withdrawn and replaced.
    Rotate { lost_successor: Option<String> },
}

impl Presented {
    /// Whether the login this token belongs to still holds for `client_id` (spent or not): its
    /// grant is that client's, unrevoked, and the token unexpired.
    pub fn holds_for(&self, client_id: &str, now: UnixTime) -> bool {
        self.grant.client_id == client_id && !self.grant_revoked && self.expires_at > now
    }
}

pub fn judge(token: &Presented, client_id: &str, now: UnixTime, reuse_grace: UnixTime) -> Verdict {
    if !token.holds_for(client_id, now) {
        return Verdict::Invalid;
    }
    match (token.used_at, &token.replaced_by) {
        (None, _) => Verdict::Rotate { lost_successor: None },
        (Some(spent_at), Some(successor)) if now - spent_at < reuse_grace && token.successor_unused => {
            Verdict::Rotate { lost_successor: Some(successor.clone()) }
        }
        (Some(_), _) => Verdict::Reuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presented(used_at: Option<UnixTime>, successor_unused: bool) -> Presented {
        let grant = Grant {
            id: "g".into(),
            client_id: "hub".into(),
            user_id: "u".into(),
            session_id: None,
            scope: "openid".into(),
            auth_time: 0,
            created_at: 0,
        };
        let user = User {
            id: "u".into(),
            username: "ada".into(),
            name: None,
            email: None,
            email_verified: false,
            groups: vec![],
            created_at: 0,
            updated_at: 0,
            last_login_at: None,
        };
        Presented {
            token_hash: "this".into(),
            grant,
            user,
            used_at,
            expires_at: 1000,
            grant_revoked: false,
            replaced_by: used_at.map(|_| "next".into()),
            successor_unused,
        }
    }

    #[test]
    fn only_the_token_just_rotated_into_an_unused_successor_is_forgiven() {
        assert_eq!(judge(&presented(None, false), "hub", 10, 30), Verdict::Rotate { lost_successor: None });
        assert_eq!(
            judge(&presented(Some(5), true), "hub", 10, 30),
            Verdict::Rotate { lost_successor: Some("next".into()) }
        );
        assert_eq!(judge(&presented(Some(5), false), "hub", 10, 30), Verdict::Reuse, "successor in use");
        assert_eq!(judge(&presented(Some(5), true), "hub", 35, 30), Verdict::Reuse, "past the grace");
        assert_eq!(judge(&presented(Some(5), true), "hub", 10, 0), Verdict::Reuse, "no grace");
        assert_eq!(judge(&presented(None, false), "other", 10, 30), Verdict::Invalid, "not reuse by its owner");
        assert_eq!(judge(&presented(None, false), "hub", 1000, 30), Verdict::Invalid, "expired");
    }
}
