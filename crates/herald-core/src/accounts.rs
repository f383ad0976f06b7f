//! What an administrator's change to an account (a new role, a deletion) came to, and the event a
//! deleted account leaves; the port is [`crate::store::AccountStore`].

use crate::user::User;

/// The event type, on a deleted account's own stream, that has every gateway close that
/// account's sessions with `account_gone` (written with the deletion, relayed like any event).
pub const ACCOUNT_GONE_EVENT: &str = "account.gone";

/// What an administrator's change to an account came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountChange {
    /// Done: the account as it is now (for a deletion, as it was).
    Done(User),
    /// There is no such account.
    Gone,
    /// The account is the only administrator: demoting or deleting it is refused.
    LastAdmin,
}
