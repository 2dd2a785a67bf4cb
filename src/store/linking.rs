//! Which user an upstream identity lands on, and under which username: the account-linking rules,
//! kept out of the backends so that every backend applies the same ones. A backend reads the few
//! facts these functions ask for (inside its write transaction) and writes what they decide.

use crate::model::UpstreamIdentity;
use crate::store::{StoreError, StoreResult};

/// Who an identity belongs to, before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub user_id: String,
    /// Not linked yet: joins this user by their shared verified e-mail address.
    pub linked_by_email: bool,
}

/// The address to look another user up by when `identity` has no link of its own: only with
/// `link_by_verified_email` on and an address the upstream vouches for.
pub fn email_to_match(identity: &UpstreamIdentity, link_by_email: bool) -> Option<&str> {
    match (link_by_email, identity.email_verified, &identity.email) {
        (true, true, Some(email)) => Some(email),
        _ => None,
    }
}

/// The user an identity signs in as: its own link, else the one user whose verified address is
/// the same (`same_email`, at most two looked up). Two users sharing the address are ambiguous:
/// neither is chosen.
pub fn owner(linked_user: Option<String>, same_email: Vec<String>) -> Option<Owner> {
    if let Some(user_id) = linked_user {
        return Some(Owner { user_id, linked_by_email: false });
    }
    match <[String; 1]>::try_from(same_email) {
        Ok([user_id]) => Some(Owner { user_id, linked_by_email: true }),
        Err(_) => None,
    }
}

/// Whether `identity` is its user's first identity (`first`: connector and subject of the oldest
/// link). A user's username follows their first identity only; a linked second identity (another
/// provider's name for the same person) does not rename them.
pub fn is_primary(first: Option<(String, String)>, identity: &UpstreamIdentity) -> bool {
    first.is_none_or(|(connector, subject)| connector == identity.connector_id && subject == identity.subject)
}

/// What a login writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// A new user under the identity's username, with the identity as its first link.
    NewUser,
    /// The existing user, renamed to `username` (unchanged unless the identity is primary);
    /// `link` when the identity must be attached first (joined by e-mail).
    Existing { user_id: String, username: String, link: bool },
}

/// Decides the landing of `identity` given its `owner`, whether it is the owner's primary
/// identity, the owner's current username and who holds the identity's username now.
/// A username held by someone else is refused, never merged.
pub fn landing(
    identity: &UpstreamIdentity,
    owner: Option<Owner>,
    primary: bool,
    owner_username: Option<String>,
    username_holder: Option<&str>,
) -> StoreResult<Landing> {
    let Some(owner) = owner else {
        return match username_holder {
            Some(_) => Err(StoreError::UsernameTaken(identity.username.clone())),
            None => Ok(Landing::NewUser),
        };
    };
    if primary && username_holder.is_some_and(|h| h != owner.user_id) {
        return Err(StoreError::UsernameTaken(identity.username.clone()));
    }
    let username = match (primary, owner_username) {
        (false, Some(current)) => current,
        _ => identity.username.clone(),
    };
    Ok(Landing::Existing { user_id: owner.user_id, username, link: owner.linked_by_email })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(connector: &str, subject: &str, username: &str) -> UpstreamIdentity {
        UpstreamIdentity {
            connector_id: connector.into(),
            subject: subject.into(),
            username: username.into(),
            name: None,
            email: Some("ada@example.org".into()),
            email_verified: true,
            groups: vec![],
        }
    }

    #[test]
    fn an_address_is_matched_only_when_linking_is_on_and_the_upstream_verified_it() {
        let mut ada = identity("gh", "1", "ada");
        assert_eq!(email_to_match(&ada, true), Some("ada@example.org"));
        assert_eq!(email_to_match(&ada, false), None);
        ada.email_verified = false;
        assert_eq!(email_to_match(&ada, true), None);
    }

    #[test]
    fn two_users_with_one_address_are_ambiguous() {
        assert_eq!(owner(None, vec!["u1".into(), "u2".into()]), None);
        assert_eq!(owner(None, vec!["u1".into()]), Some(Owner { user_id: "u1".into(), linked_by_email: true }));
        assert_eq!(
            owner(Some("u9".into()), vec!["u1".into()]),
            Some(Owner { user_id: "u9".into(), linked_by_email: false })
        );
    }

    #[test]
    fn a_second_identity_keeps_the_users_name_and_a_taken_name_is_refused() {
        let second = identity("google", "g1", "ada.lovelace");
        assert!(!is_primary(Some(("gh".into(), "1".into())), &second));
        let owner = Owner { user_id: "u1".into(), linked_by_email: true };
        assert_eq!(
            landing(&second, Some(owner.clone()), false, Some("ada".into()), Some("u2")).unwrap(),
            Landing::Existing { user_id: "u1".into(), username: "ada".into(), link: true }
        );
        let first = identity("gh", "1", "ada");
        assert!(matches!(
            landing(&first, Some(owner), true, Some("ada-old".into()), Some("u2")),
            Err(StoreError::UsernameTaken(name)) if name == "ada"
        ));
        assert!(matches!(landing(&first, None, true, None, Some("u2")), Err(StoreError::UsernameTaken(_))));
        assert_eq!(landing(&first, None, true, None, None).unwrap(), Landing::NewUser);
    }
}
