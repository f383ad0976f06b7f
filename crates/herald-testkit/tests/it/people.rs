//! A person's profile (name, phone, zone) and notification preferences over REST, on every store.

use herald_testkit::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

api_tests! {
    a_person_sets_and_clears_their_contact_points,
    preferences_default_until_replaced_and_bad_ones_name_every_field,
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
