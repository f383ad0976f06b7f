//! A person's profile (name, phone, zone) and notification preferences.

use herald_core::{
    campaign::TimeZone,
    delivery::DailyWindow,
    notify::{ChannelSwitches, NoticeType, Preferences, TypePreference, TypeSwitches},
    store::{Store, StoreError},
    user::{ContactPhone, ProfileChange, Role, UserId, UserName},
};

use super::new_user;

pub async fn a_profile_changes_only_the_fields_given_and_clears_with_none(store: &dyn Store) {
    let new = new_user("profile@example.org", Role::User);
    store.create_user(&new).await.expect("create");
    let id = new.user.id;
    let phone = ContactPhone::parse("+4915112345678").expect("phone");
    let berlin: TimeZone = "Europe/Berlin".parse().expect("zone");
    let set = ProfileChange { name: None, phone: Some(Some(phone.clone())), timezone: Some(Some(berlin)) };
    let changed = store.update_profile(id, &set).await.expect("update");
    assert_eq!((changed.phone.as_ref(), changed.timezone), (Some(&phone), Some(berlin)));
    assert_eq!(changed.name, new.user.name, "an absent field is left as it was");
    assert_eq!(store.user_by_id(id).await.expect("read"), Some(changed.clone()), "what it answered is stored");

    let rename = ProfileChange { name: Some(UserName::parse("Ada").expect("name")), ..ProfileChange::default() };
    let renamed = store.update_profile(id, &rename).await.expect("rename");
    assert_eq!((renamed.name.as_str(), renamed.phone.as_ref()), ("Ada", Some(&phone)));

    let clear = ProfileChange { name: None, phone: Some(None), timezone: Some(None) };
    let cleared = store.update_profile(id, &clear).await.expect("clear");
    assert_eq!((cleared.phone, cleared.timezone, cleared.name.as_str()), (None, None, "Ada"));

    let gone = store.update_profile(UserId::new(), &rename).await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
}

pub async fn preferences_default_until_set_and_read_back_whole(store: &dyn Store) {
    let new = new_user("prefs@example.org", Role::User);
    store.create_user(&new).await.expect("create");
    let id = new.user.id;
    assert_eq!(store.preferences(id).await.expect("read"), Some(Preferences::default()));
    assert_eq!(store.preferences(UserId::new()).await.expect("read"), None, "an unknown user has none");

    let preferences = Preferences {
        quiet_hours: Some(DailyWindow { start: "22:00".parse().expect("t"), end: "07:00".parse().expect("t") }),
        channels: ChannelSwitches { email: true, sms: false, webhook: true },
        types: [(
            NoticeType::parse("marketing").expect("type"),
            TypePreference { channels: TypeSwitches { email: Some(false), sms: None, webhook: None } },
        )]
        .into(),
    };
    store.set_preferences(id, &preferences).await.expect("set");
    assert_eq!(store.preferences(id).await.expect("read"), Some(preferences));
    store.set_preferences(id, &Preferences::default()).await.expect("replace");
    assert_eq!(store.preferences(id).await.expect("read"), Some(Preferences::default()), "a set replaces it whole");
    let gone = store.set_preferences(UserId::new(), &Preferences::default()).await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
}

pub async fn api_keys_are_found_by_hash_listed_and_revoked_once(store: &dyn Store) {
    use herald_core::apikey::{ApiKey, ApiKeyId, ApiScope, KeyName};
    let admin = new_user("keys@example.org", Role::Admin);
    store.create_user(&admin).await.expect("create");
    let made = |name: &str, scopes: Vec<ApiScope>| ApiKey {
        id: ApiKeyId::new(),
        name: KeyName::parse(name).expect("name"),
        scopes,
        created_by: admin.user.id,
        created_at: super::now(),
        revoked_at: None,
    };
    let (first, second) =
        (made("billing", vec![ApiScope::Notify]), made("crm", vec![ApiScope::Campaigns, ApiScope::Admin]));
    store.create_api_key(&first, &"a".repeat(64)).await.expect("store");
    store.create_api_key(&second, &"b".repeat(64)).await.expect("store");
    assert_eq!(store.api_key_by_hash(&"a".repeat(64)).await.expect("read"), Some(first.clone()));
    assert_eq!(store.api_key_by_hash(&"c".repeat(64)).await.expect("read"), None);
    let listed = store.list_api_keys(None, 10).await.expect("list");
    assert_eq!(listed, [first.clone(), second.clone()], "in id order, every field back");
    assert_eq!(store.list_api_keys(Some(first.id), 10).await.expect("page"), std::slice::from_ref(&second));

    let at = super::now();
    let revoked = store.revoke_api_key(first.id, at).await.expect("revoke");
    assert_eq!(revoked.revoked_at, Some(at));
    let again = store.revoke_api_key(first.id, at + chrono::Duration::seconds(5)).await.expect("revoke again");
    assert_eq!(again.revoked_at, Some(at), "the first revocation stands");
    assert_eq!(store.api_key_by_hash(&"a".repeat(64)).await.expect("read").and_then(|k| k.revoked_at), Some(at));
    let gone = store.revoke_api_key(ApiKeyId::new(), at).await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
}
