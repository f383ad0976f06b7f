//! A caller's identity as it is now: a token or key proves who signed in, the store says what
//! that account may do today. Every command on every transport passes through [`current`]
//! (in [`crate::command::Registry::call_body`]), and so does every real-time handshake and
//! subscription: one read of the account by its primary key, no cache.

use crate::{
    error::{ApiError, ErrorCode},
    identity::{Caller, Identity},
    store::Store,
};

/// A token whose account is gone proves nothing any more.
pub fn account_gone() -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, "the account of this token no longer exists")
}

/// `identity` with the role its account has now; `invalid_token` when the account is gone.
pub async fn current_identity(store: &dyn Store, identity: Identity) -> Result<Identity, ApiError> {
    match store.user_by_id(identity.user_id).await? {
        Some(user) => Ok(Identity { user_id: user.id, role: user.role }),
        None => Err(account_gone()),
    }
}

/// `caller` acting with the current role of its account: a person's own, or an API key's
/// maker's (a demoted maker's keys lose admin power, a deleted maker's keys stop).
pub async fn current(store: &dyn Store, caller: Caller) -> Result<Caller, ApiError> {
    Ok(match caller {
        Caller::Anonymous => Caller::Anonymous,
        Caller::User(identity) => Caller::User(current_identity(store, identity).await?),
        Caller::Key(mut key) => {
            key.identity = current_identity(store, key.identity)
                .await
                .map_err(|_| ApiError::new(ErrorCode::InvalidToken, "the API key is not valid or was revoked"))?;
            Caller::Key(key)
        }
    })
}
