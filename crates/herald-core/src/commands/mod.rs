//! The use cases, as commands. [`registry`] lists every command Herald serves.

pub mod admin;
pub mod api_keys;
pub mod attachments;
pub mod auth;
pub mod clients;
pub mod events;
pub mod mailings;
pub mod notifications;
pub mod reports;
pub mod rooms;
pub mod tasks;
pub mod users;

use crate::command::Registry;

/// The command groups, each the first part of its commands' names; `HERALD_COMMANDS` names some
/// of them to host (see [`crate::hosting`]).
pub const GROUPS: &[&str] = &[
    "auth",
    "users",
    "api_keys",
    "notifications",
    "tasks",
    "attachments",
    "clients",
    "mailings",
    "reports",
    "events",
    "rooms",
    "admin",
];

/// Every command, registered once; transports and the OpenAPI document read this.
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    registry
        .register(auth::Register)
        .register(auth::Login)
        .register(users::Me)
        .register(users::List)
        .register(users::accounts::SetRole)
        .register(users::accounts::Delete)
        .register(users::webhook::Webhook)
        .register(users::webhook::SetWebhook)
        .register(users::webhook::RotateWebhookSecret)
        .register(users::profile::UpdateMe)
        .register(users::profile::GetPreferences)
        .register(users::profile::SetPreferences)
        .register(api_keys::Create)
        .register(api_keys::List)
        .register(api_keys::Revoke)
        .register(notifications::Create)
        .register(notifications::Get)
        .register(notifications::List)
        .register(notifications::Inbox)
        .register(notifications::Read)
        .register(notifications::ReadAll)
        .register(tasks::Create)
        .register(tasks::Get)
        .register(tasks::List)
        .register(tasks::Update)
        .register(tasks::Delete)
        .register(attachments::List)
        .register(attachments::Delete)
        .register_upload(attachments::Upload)
        .register_download(attachments::Download)
        .register(clients::Create)
        .register(clients::Get)
        .register(clients::List)
        .register(clients::Update)
        .register(clients::Delete)
        .register_upload(clients::import::Import::default())
        .register(mailings::Create)
        .register(mailings::Get)
        .register(mailings::List)
        .register(mailings::Update)
        .register(mailings::Delete)
        .register(mailings::Stats)
        .register(mailings::StatsOne)
        .register(mailings::Messages)
        .register(mailings::timeline::MailingTimeline)
        .register(reports::Daily)
        .register(events::Create)
        .register(events::Get)
        .register(events::List)
        .register(events::Update)
        .register(events::Delete)
        .register(events::Notifications)
        .register(rooms::Create)
        .register(rooms::List)
        .register(rooms::AddMember)
        .register(rooms::RemoveMember)
        .register(rooms::PostMessage)
        .register(rooms::Messages)
        .register(admin::Quarantined)
        .register(admin::Retry)
        .check_outputs();
    registry
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorCode;

    fn fields(input: serde_json::Value) -> Vec<(String, String)> {
        let registry = registry();
        let info = registry.get("auth.register").expect("registered");
        match info.validate(&input) {
            Ok(()) => Vec::new(),
            Err(err) => {
                assert_eq!(err.code(), ErrorCode::ValidationFailed);
                err.field_errors().iter().map(|e| (e.field.clone(), e.message.clone())).collect()
            }
        }
    }

    /// [`GROUPS`] is exactly the set of the registry's command groups.
    #[test]
    fn groups_are_the_registrys() {
        let registered: std::collections::BTreeSet<&str> =
            registry().iter().map(|info| crate::command_group::group_of(info.name)).collect();
        let listed: std::collections::BTreeSet<&str> = GROUPS.iter().copied().collect();
        assert_eq!(registered, listed);
    }

    /// One answer lists every bad field: the schema's failures and the typed checks' together.
    #[test]
    fn every_bad_field_is_reported_at_once() {
        let registry = registry();
        let info = registry.get("clients.create").expect("registered");
        let fields = |input: serde_json::Value| -> Vec<String> {
            let err = info.check_input(&input).expect_err("refused");
            assert_eq!(err.code(), ErrorCode::ValidationFailed);
            let mut fields: Vec<String> = err.field_errors().iter().map(|e| e.field.clone()).collect();
            fields.sort();
            fields
        };
        // A phone the schema refuses, a time zone only the typed check knows, a tag too long.
        let three = json!({"phone": "12", "timezone": "Mars/Olympus", "tag": "x".repeat(65)});
        assert_eq!(fields(three), ["phone", "tag", "timezone"]);
        // The schema accepts all of it; the typed checks refuse two fields, both reported.
        let typed_only = json!({"phone": "79161234567", "timezone": "Mars/Olympus", "operator_code": "916"});
        assert_eq!(fields(typed_only.clone()), ["timezone"]);
        assert!(info.check_input(&json!({"phone": "79161234567"})).is_ok());
        let events = registry.get("events.create").expect("registered");
        let err = events
            .check_input(&json!({"title": "", "starts_at": "not a time", "duration": 0, "timezone": "Nowhere/Land"}))
            .expect_err("refused");
        assert!(err.field_errors().len() >= 3, "{:?}", err.field_errors());
    }

    /// Every component name of the OpenAPI document stands for one schema: two types that share a
    /// name would make the document describe one operation with another's body.
    #[test]
    fn no_two_schemas_share_a_component_name() {
        let mut seen: std::collections::BTreeMap<String, (serde_json::Value, String)> = Default::default();
        let mut clashes = Vec::new();
        for info in registry().iter() {
            for doc in [&info.input, &info.output] {
                let mut all = vec![(doc.name.clone(), doc.schema.clone())];
                all.extend(doc.components.iter().cloned());
                for (name, schema) in all {
                    let schema = serde_json::to_value(&schema).expect("schemas serialise");
                    match seen.get(&name) {
                        Some((other, by)) if *other != schema => {
                            clashes.push(format!("{name}: {by} and {}", info.name));
                        }
                        Some(_) => {}
                        None => {
                            seen.insert(name, (schema, info.name.to_owned()));
                        }
                    }
                }
            }
        }
        assert!(clashes.is_empty(), "component names used for different schemas:\n{}", clashes.join("\n"));
    }

    #[test]
    fn every_command_schema_compiles() {
        let names: Vec<_> = registry().iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "admin.quarantined",
                "admin.retry_quarantined",
                "api_keys.create",
                "api_keys.list",
                "api_keys.revoke",
                "attachments.delete",
                "attachments.download",
                "attachments.list",
                "attachments.upload",
                "auth.login",
                "auth.register",
                "clients.create",
                "clients.delete",
                "clients.get",
                "clients.import",
                "clients.list",
                "clients.update",
                "events.create",
                "events.delete",
                "events.get",
                "events.list",
                "events.notifications",
                "events.update",
                "mailings.create",
                "mailings.delete",
                "mailings.get",
                "mailings.list",
                "mailings.messages",
                "mailings.stats",
                "mailings.stats_one",
                "mailings.timeline",
                "mailings.update",
                "notifications.create",
                "notifications.get",
                "notifications.inbox",
                "notifications.list",
                "notifications.read",
                "notifications.read_all",
                "reports.daily",
                "rooms.add_member",
                "rooms.create",
                "rooms.list",
                "rooms.messages",
                "rooms.post_message",
                "rooms.remove_member",
                "tasks.create",
                "tasks.delete",
                "tasks.get",
                "tasks.list",
                "tasks.update",
                "users.delete",
                "users.list",
                "users.me",
                "users.preferences",
                "users.rotate_webhook_secret",
                "users.set_preferences",
                "users.set_role",
                "users.set_webhook",
                "users.update_me",
                "users.webhook"
            ]
        );
    }

    #[test]
    fn register_input_is_checked_field_by_field() {
        let ok = json!({"email": "ada@example.org", "password": "long enough", "name": "Ada"});
        assert_eq!(fields(ok), vec![]);

        let errs = fields(json!({"email": 5, "extra": true}));
        assert!(errs.contains(&("email".into(), "must be of type string".into())), "{errs:?}");
        assert!(errs.contains(&("password".into(), "is required".into())), "{errs:?}");
        assert!(errs.contains(&("name".into(), "is required".into())), "{errs:?}");
        assert!(errs.contains(&("extra".into(), "is not a known field".into())), "{errs:?}");

        let errs = fields(json!({"email": "not-an-email", "password": "hunter2", "name": ""}));
        let names: Vec<_> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(names.len(), 3, "{errs:?}");
        assert!(names.contains(&"email") && names.contains(&"password") && names.contains(&"name"), "{errs:?}");
        assert!(errs.iter().all(|(_, m)| !m.contains("hunter2")), "the password was echoed: {errs:?}");

        assert!(!fields(json!("a string")).is_empty());
        assert!(!fields(json!(null)).is_empty());
    }
}
