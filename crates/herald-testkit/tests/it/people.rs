//! A person's profile (name, phone, zone) and notification preferences over REST, on every store.

use herald_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

api_tests! {
    a_person_sets_and_clears_their_contact_points,
    preferences_default_until_replaced_and_bad_ones_name_every_field,
    api_keys_act_within_their_scopes_until_revoked,
}

async fn patch_me(app: &TestApp, token: Option<&str>, body: Value) -> herald_testkit::app::Reply {
    app.send(Method::PATCH, "/api/v1/me", token, Some(&body)).await
}

async fn a_person_sets_and_clears_their_contact_points(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let me = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!((&me.body["phone"], &me.body["timezone"]), (&Value::Null, &Value::Null), "{:?}", me.body);

    let set =
        patch_me(app, Some(&token), json!({"name": "Ada L.", "phone": "+4915112345678", "timezone": "Europe/Berlin"}))
            .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    assert_eq!(
        (&set.body["name"], &set.body["phone"], &set.body["timezone"]),
        (&json!("Ada L."), &json!("+4915112345678"), &json!("Europe/Berlin"))
    );
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.body, set.body, "/me shows what was set");

    // Only what is given changes; null clears.
    let russian = patch_me(app, Some(&token), json!({"phone": "79161234567"})).await;
    assert_eq!((&russian.body["phone"], &russian.body["timezone"]), (&json!("79161234567"), &json!("Europe/Berlin")));
    let cleared = patch_me(app, Some(&token), json!({"phone": null, "timezone": null})).await;
    assert_eq!(
        (&cleared.body["phone"], &cleared.body["timezone"], &cleared.body["name"]),
        (&Value::Null, &Value::Null, &json!("Ada L."))
    );

    // Every bad field at once, nothing changed.
    let bad = patch_me(app, Some(&token), json!({"name": "", "phone": "12345", "timezone": "Mars/Olympus"})).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{:?}", bad.body);
    assert_eq!(bad.fields(), ["name", "phone", "timezone"], "{:?}", bad.body);
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.body, cleared.body);
    let unknown = patch_me(app, Some(&token), json!({"email": "eve@example.org"})).await;
    assert_eq!(unknown.fields(), ["email"], "{:?}", unknown.body);
    assert_eq!(patch_me(app, None, json!({"name": "Nobody"})).await.code(), "unauthorized");
}

async fn preferences_default_until_replaced_and_bad_ones_name_every_field(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let defaults = app.get("/api/v1/me/preferences", Some(&token)).await;
    assert_eq!(defaults.status, StatusCode::OK, "{:?}", defaults.body);
    assert_eq!(
        defaults.body,
        json!({"quiet_hours": null, "channels": {"email": true, "sms": true, "webhook": true}, "types": {}})
    );

    let wanted = json!({
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "channels": {"email": true, "sms": false, "webhook": true},
        "types": {"marketing": {"channels": {"email": false}}, "security.alert": {"channels": {"sms": true}}},
    });
    let put = app.send(Method::PUT, "/api/v1/me/preferences", Some(&token), Some(&wanted)).await;
    assert_eq!((put.status, &put.body), (StatusCode::OK, &wanted));
    assert_eq!(app.get("/api/v1/me/preferences", Some(&token)).await.body, wanted);
    // Another person's are their own.
    let eve = app.user("eve@example.org").await;
    assert_eq!(app.get("/api/v1/me/preferences", Some(&eve)).await.body, defaults.body);

    let bad = json!({
        "quiet_hours": {"start": "25:00", "end": "7am"},
        "channels": {"pigeon": true},
        "types": {"Bad Type": {}},
    });
    let refused = app.send(Method::PUT, "/api/v1/me/preferences", Some(&token), Some(&bad)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "{:?}",
        refused.body
    );
    let fields = refused.fields();
    for field in ["quiet_hours.start", "quiet_hours.end", "channels.pigeon"] {
        assert!(fields.iter().any(|f| f == field), "{field} is named: {:?}", refused.body);
    }
    assert!(fields.iter().any(|f| f.starts_with("types")), "{:?}", refused.body);
    let same = json!({"quiet_hours": {"start": "07:00", "end": "07:00"}});
    let refused = app.send(Method::PUT, "/api/v1/me/preferences", Some(&token), Some(&same)).await;
    assert_eq!(refused.fields(), ["quiet_hours"], "{:?}", refused.body);
    let many: serde_json::Map<String, Value> = (0..=100).map(|i| (format!("t{i}"), json!({}))).collect();
    let refused = app.send(Method::PUT, "/api/v1/me/preferences", Some(&token), Some(&json!({"types": many}))).await;
    assert_eq!(refused.code(), "validation_failed", "{:?}", refused.body);
    assert_eq!(app.get("/api/v1/me/preferences", Some(&token)).await.body, wanted, "refusals change nothing");
}

/// An admin makes a key for a service: shown once, acting within its scopes on every request,
/// refused from the moment it is revoked; nobody else makes keys, and no key does.
async fn api_keys_act_within_their_scopes_until_revoked(app: &TestApp) {
    let admin = app.admin("root@example.org").await;
    let made = app.post("/api/v1/api-keys", Some(&admin), &json!({"name": "crm sync", "scopes": ["campaigns"]})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let key = made.body["key"].as_str().expect("the secret, once").to_owned();
    assert!(key.starts_with("hk_"), "{key}");
    assert_eq!(made.body["scopes"], json!(["campaigns"]));

    // The key works as a bearer token for what its scope allows, and only that.
    let client = app.post("/api/v1/clients", Some(&key), &json!({"phone": "79161234567"})).await;
    assert_eq!(client.status, StatusCode::CREATED, "{:?}", client.body);
    assert_eq!(app.get("/api/v1/clients", Some(&key)).await.status, StatusCode::OK);
    let users = app.get("/api/v1/users", Some(&key)).await;
    assert_eq!((users.status, users.code()), (StatusCode::FORBIDDEN, "forbidden"), "{:?}", users.body);
    let more = app.post("/api/v1/api-keys", Some(&key), &json!({"name": "more", "scopes": ["admin"]})).await;
    assert_eq!(more.code(), "forbidden", "a key makes no keys: {:?}", more.body);

    // Listed without its secret.
    let listed = app.get("/api/v1/api-keys", Some(&admin)).await;
    let items = listed.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert!(items[0].get("key").is_none() && !listed.body.to_string().contains(&key), "{:?}", listed.body);

    // Revoked: refused at once.
    let id = made.body["id"].as_str().expect("id");
    let revoked = app.send(Method::DELETE, &format!("/api/v1/api-keys/{id}"), Some(&admin), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{:?}", revoked.body);
    let after = app.get("/api/v1/clients", Some(&key)).await;
    assert_eq!((after.status, after.code()), (StatusCode::UNAUTHORIZED, "invalid_token"), "{:?}", after.body);
    let listed = app.get("/api/v1/api-keys", Some(&admin)).await;
    assert!(listed.body["items"][0]["revoked_at"].is_string(), "{:?}", listed.body);
    let forged = format!("{key}x");
    assert_eq!(app.get("/api/v1/clients", Some(&forged)).await.code(), "invalid_token");

    // Only admins make keys; a bad request names its fields.
    let user = app.user("ada@example.org").await;
    let refused = app.post("/api/v1/api-keys", Some(&user), &json!({"name": "mine", "scopes": ["notify"]})).await;
    assert_eq!(refused.code(), "forbidden");
    let bad = app.post("/api/v1/api-keys", Some(&admin), &json!({"name": "", "scopes": ["root"]})).await;
    assert_eq!(bad.code(), "validation_failed", "{:?}", bad.body);
    assert_eq!(bad.fields(), ["name", "scopes.0"], "{:?}", bad.body);
    let none = app.post("/api/v1/api-keys", Some(&admin), &json!({"name": "empty", "scopes": []})).await;
    assert_eq!(none.fields(), ["scopes"], "{:?}", none.body);
    let unknown =
        app.send(Method::DELETE, &format!("/api/v1/api-keys/{}", uuid::Uuid::now_v7()), Some(&admin), None).await;
    assert_eq!(unknown.code(), "not_found");
}
