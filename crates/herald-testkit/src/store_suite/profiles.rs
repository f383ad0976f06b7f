//! A person's profile (name, phone, zone) and notification preferences.

use herald_core::{
    campaign::TimeZone,
    notify::{ChannelSwitches, NoticeType, Preferences, QuietHours, TypePreference, TypeSwitches},
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
        quiet_hours: Some(QuietHours { start: "22:00".parse().expect("t"), end: "07:00".parse().expect("t") }),
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
