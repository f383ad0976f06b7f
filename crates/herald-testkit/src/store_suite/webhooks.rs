//! Users' webhooks and their signing secrets, for every store.

use chrono::Duration;
use herald_core::{
    store::{Store, StoreError},
    user::{UserId, WebhookUrl},
    webhook::{ROTATION_OVERLAP, WebhookSecret},
};

use super::{now, owner};

pub async fn a_users_webhook_is_set_read_and_cleared(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    assert_eq!(store.webhook(ada).await.expect("read"), None);
    let url = WebhookUrl::parse("https://hooks.example.org:8443/herald?k=1").expect("url");
    store.set_webhook(ada, Some(&url), &WebhookSecret::generate()).await.expect("set");
    assert_eq!(store.webhook(ada).await.expect("read"), Some(url));
    store.set_webhook(ada, None, &WebhookSecret::generate()).await.expect("clear");
    assert_eq!(store.webhook(ada).await.expect("read"), None);
    let gone = store.set_webhook(UserId::new(), None, &WebhookSecret::generate()).await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
    assert_eq!(store.webhook(UserId::new()).await.expect("read"), None);
}

pub async fn a_webhooks_secret_is_given_once_kept_across_urls_and_rotated(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let t = now();
    let first = WebhookUrl::parse("https://hooks.example.org/a").expect("url");
    let secret = WebhookSecret::generate();
    let given = store.set_webhook(ada, Some(&first), &secret).await.expect("set");
    assert_eq!(given, Some(secret.clone()), "answered when the webhook is first set");
    let keys = store.webhook_keys(ada, t).await.expect("keys").expect("a webhook");
    assert_eq!((keys.current, keys.previous), (secret.clone(), None));

    let second = WebhookUrl::parse("https://hooks.example.org/b").expect("url");
    assert_eq!(store.set_webhook(ada, Some(&second), &WebhookSecret::generate()).await.expect("move"), None);
    assert_eq!(store.webhook_keys(ada, t).await.expect("keys").expect("a webhook").current, secret, "kept");

    let rotated = WebhookSecret::generate();
    assert!(store.rotate_webhook_secret(ada, &rotated, t + ROTATION_OVERLAP).await.expect("rotate"));
    let keys = store.webhook_keys(ada, t + Duration::hours(23)).await.expect("keys").expect("a webhook");
    assert_eq!((keys.current, keys.previous), (rotated.clone(), Some(secret.clone())), "both sign for a day");
    let keys = store.webhook_keys(ada, t + ROTATION_OVERLAP).await.expect("keys").expect("a webhook");
    assert_eq!((keys.current, keys.previous), (rotated, None), "then the new one alone");

    store.set_webhook(ada, None, &WebhookSecret::generate()).await.expect("clear");
    assert_eq!(store.webhook_keys(ada, t).await.expect("keys"), None);
    assert!(!store.rotate_webhook_secret(ada, &WebhookSecret::generate(), t).await.expect("no webhook"));
    let again = WebhookSecret::generate();
    let given = store.set_webhook(ada, Some(&first), &again).await.expect("set again");
    assert_eq!(given, Some(again), "a webhook set anew gets a new secret, answered again");
    assert_eq!(store.fill_webhook_secrets().await.expect("fill"), 0, "every webhook has one");
}
