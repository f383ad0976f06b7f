//! Keeping secrets out of what Herald prints.

/// `scheme://user:secret@host/x` -> `scheme://user:***@host/x`. A bare user part on `nats`/`tls`
/// URLs is a token, and is hidden too.
pub fn url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None if scheme.starts_with("nats") || scheme == "tls" => format!("{scheme}://***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_are_hidden() {
        assert_eq!(url_password("postgres://app:pw@db:5432/h?x=1"), "postgres://app:***@db:5432/h?x=1");
        assert_eq!(url_password("postgres://app@db/h"), "postgres://app@db/h");
        assert_eq!(url_password("nats://tok3n@nats:4222"), "nats://***@nats:4222");
        assert_eq!(url_password("memory://"), "memory://");
    }
}
