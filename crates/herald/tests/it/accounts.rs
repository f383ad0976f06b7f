//! `herald users set-role` and `herald users delete`, run as an operator runs them: by email or
//! id, refusing to leave Herald without an administrator.

use super::{herald, run};

fn users(data: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut all = vec!["users"];
    all.extend_from_slice(args);
    let out = run(&mut herald(data, &all, &[]));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn roles_change_and_accounts_go_but_never_the_last_admin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    let (ok, text) = users(data, &["create", "--email", "root@example.org", "--password", "root-password", "--admin"]);
    assert!(ok, "{text}");
    let (ok, text) = users(data, &["create", "--email", "ada@example.org", "--password", "ada-password"]);
    assert!(ok, "{text}");
    let ada_id = text.trim().rsplit('(').next().and_then(|s| s.strip_suffix(')')).expect("the id").to_owned();

    let (ok, text) = users(data, &["set-role", "--email", "root@example.org", "--role", "user"]);
    assert!(!ok && text.contains("last_admin"), "the only admin keeps the role: {text}");
    let (ok, text) = users(data, &["delete", "--email", "root@example.org"]);
    assert!(!ok && text.contains("last_admin"), "the only admin stays: {text}");

    let (ok, text) = users(data, &["set-role", "--id", &ada_id, "--role", "admin"]);
    assert!(ok && text.contains("ada@example.org is now admin"), "{text}");
    let (ok, text) = users(data, &["set-role", "--email", "root@example.org", "--role", "user"]);
    assert!(ok && text.contains("root@example.org is now user"), "{text}");
    let (ok, text) = users(data, &["delete", "--email", "ada@example.org"]);
    assert!(!ok && text.contains("last_admin"), "ada is the only admin now: {text}");
    let (ok, text) = users(data, &["delete", "--email", "root@example.org"]);
    assert!(ok && text.contains("deleted user root@example.org"), "{text}");
    let (ok, text) = users(data, &["delete", "--email", "root@example.org"]);
    assert!(!ok && text.contains("no account has the email"), "{text}");

    let (ok, text) = users(data, &["set-role", "--email", "ada@example.org", "--role", "owner"]);
    assert!(!ok && text.contains("owner"), "an unknown role is refused by name: {text}");
    let (ok, _) = users(data, &["delete"]);
    assert!(!ok, "an account must be named");
    let (ok, _) = users(data, &["delete", "--email", "ada@example.org", "--id", &ada_id]);
    assert!(!ok, "by email or by id, not both");
}
