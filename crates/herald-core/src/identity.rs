//! Who a command runs for: the caller types every transport makes and every command reads.

use crate::{
    apikey::{ApiKey, ApiKeyId, ApiScope},
    error::{ApiError, ErrorCode},
    redact::SecretString,
    user::{Role, UserId},
};

/// Who a command runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(Identity),
    /// A service, by an API key: it acts as the key's maker, within the key's scopes.
    Key(KeyCaller),
}

/// An authenticated user, as proven by a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub user_id: UserId,
    pub role: Role,
}

/// A caller authenticated by an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCaller {
    pub id: ApiKeyId,
    pub scopes: Vec<ApiScope>,
    /// Who the key acts as: its maker, with the maker's current role (the scopes narrow it).
    pub identity: Identity,
}

impl KeyCaller {
    /// The caller of a live key. Its role is its maker's as the store says it is now, set on
    /// every call ([`crate::caller::current`]); until then the admin role, as only admins make keys.
    pub fn of(key: &ApiKey) -> Self {
        Self {
            id: key.id,
            scopes: key.scopes.clone(),
            identity: Identity { user_id: key.created_by, role: Role::Admin },
        }
    }

    /// Refuses a command none of the key's scopes allows.
    pub fn check(&self, command: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|scope| scope.allows(command)) {
            return Ok(());
        }
        let scopes: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this API key's scopes ({}) do not allow {command}", scopes.join(", ")),
        ))
    }
}

/// The bearer token a caller presented, kept so a forwarded command carries the caller's own
/// credential (never an identity this process vouches for). Prints as `***`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer(pub SecretString);

impl Bearer {
    /// The `Authorization` header value.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_prints_no_token() {
        let bearer = Bearer(SecretString::new("eyJ.secret"));
        assert_eq!(format!("{bearer:?}"), "Bearer(***)");
        assert_eq!(bearer.header_value(), "Bearer eyJ.secret");
    }

    #[test]
    fn scopes_allow_their_groups_and_never_key_management() {
        let key = |scopes: Vec<ApiScope>| KeyCaller {
            id: ApiKeyId::new(),
            scopes,
            identity: Identity { user_id: UserId::new(), role: Role::Admin },
        };
        let campaigns = key(vec![ApiScope::Campaigns]);
        assert!(campaigns.check("clients.create").is_ok() && campaigns.check("mailings.list").is_ok());
        assert_eq!(campaigns.check("users.list").map_err(|e| e.code()), Err(ErrorCode::Forbidden));
        let notify = key(vec![ApiScope::Notify]);
        assert!(notify.check("notifications.create").is_ok() && notify.check("clients.list").is_err());
        let admin = key(vec![ApiScope::Admin]);
        assert!(admin.check("users.list").is_ok() && admin.check("tasks.create").is_ok());
        assert!(admin.check("api_keys.create").is_err(), "no key makes keys");
    }
}
