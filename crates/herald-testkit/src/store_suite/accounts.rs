//! Accounts: role changes and deletions never leave Herald without an administrator, even when
//! two race; a deletion takes everything of the account's in one step and says so in the outbox.

use herald_core::{
    accounts::{ACCOUNT_GONE_EVENT, AccountChange},
    apikey::{ApiKey, ApiKeyId, ApiScope, KeyName},
    change::ChangeEvent,
    delivery::DeliveryStatus,
    store::Store,
    user::{Role, UserId},
};

use super::{deliveries::new_delivery, new_task, new_user, now};

fn gone(user: UserId) -> ChangeEvent {
    ChangeEvent::for_user(user, ACCOUNT_GONE_EVENT, serde_json::json!({"user_id": user}), now())
}

async fn user(store: &dyn Store, email: &str, role: Role) -> UserId {
    let new = new_user(email, role);
    store.create_user(&new).await.expect("create user");
    new.user.id
}

pub async fn the_only_admin_is_neither_demoted_nor_deleted(store: &dyn Store) {
    let admin = user(store, "root@example.org", Role::Admin).await;
    let ada = user(store, "ada@example.org", Role::User).await;
    assert_eq!(store.change_role(admin, Role::User).await.expect("demote"), AccountChange::LastAdmin);
    assert_eq!(store.delete_user(admin, &gone(admin), now()).await.expect("delete"), AccountChange::LastAdmin);
    assert_eq!(store.user_by_id(admin).await.expect("read").expect("still there").role, Role::Admin);
    let AccountChange::Done(promoted) = store.change_role(ada, Role::Admin).await.expect("promote") else {
        panic!("a user is promoted")
    };
    assert_eq!((promoted.id, promoted.role), (ada, Role::Admin));
    assert_eq!(
        store.change_role(admin, Role::Admin).await.expect("same role"),
        AccountChange::Done(store.user_by_id(admin).await.expect("read").expect("there"))
    );
    let AccountChange::Done(demoted) = store.change_role(admin, Role::User).await.expect("demote") else {
        panic!("one of two admins is demoted")
    };
    assert_eq!(demoted.role, Role::User);
    assert_eq!(store.user_by_id(admin).await.expect("read").expect("there").role, Role::User);
    assert_eq!(store.change_role(ada, Role::User).await.expect("demote"), AccountChange::LastAdmin);
    let nobody = UserId::new();
    assert_eq!(store.change_role(nobody, Role::Admin).await.expect("unknown"), AccountChange::Gone);
    assert_eq!(store.delete_user(nobody, &gone(nobody), now()).await.expect("unknown"), AccountChange::Gone);
    assert!(store.read_outbox(0, 10).await.expect("outbox").is_empty(), "a refused deletion writes no event");
}

pub async fn two_admins_removing_each_other_at_once_leave_one(store: &dyn Store) {
    for round in 0..5 {
        let a = user(store, &format!("a{round}@example.org"), Role::Admin).await;
        let b = user(store, &format!("b{round}@example.org"), Role::Admin).await;
        // Every earlier round left one admin; make them users so a and b are the only two.
        for u in store.list_users(None, 100).await.expect("list") {
            if u.id != a && u.id != b && u.role == Role::Admin {
                assert!(matches!(store.change_role(u.id, Role::User).await.expect("demote"), AccountChange::Done(_)));
            }
        }
        let (gone_a, gone_b) = (gone(a), gone(b));
        let (first, second) = if round % 2 == 0 {
            tokio::join!(store.change_role(a, Role::User), store.delete_user(b, &gone_b, now()))
        } else {
            tokio::join!(store.delete_user(a, &gone_a, now()), store.change_role(b, Role::User))
        };
        let outcomes = [first.expect("first"), second.expect("second")];
        let done = outcomes.iter().filter(|o| matches!(o, AccountChange::Done(_))).count();
        let refused = outcomes.iter().filter(|o| **o == AccountChange::LastAdmin).count();
        assert_eq!((done, refused), (1, 1), "round {round}: {outcomes:?}");
        let admins = store.list_users(None, 100).await.expect("list").into_iter().filter(|u| u.role == Role::Admin);
        assert_eq!(admins.count(), 1, "round {round}: one administrator is left");
    }
}

pub async fn deleting_an_account_takes_what_is_theirs_and_cancels_their_deliveries(store: &dyn Store) {
    user(store, "root@example.org", Role::Admin).await;
    let ada = user(store, "ada@example.org", Role::Admin).await;
    let bob = user(store, "bob@example.org", Role::User).await;
    let (task, kept) = (new_task(ada, "Ada's"), new_task(bob, "Bob's"));
    store.create_task(&task, &[]).await.expect("task");
    store.create_task(&kept, &[]).await.expect("task");
    let key = ApiKey {
        id: ApiKeyId::new(),
        name: KeyName::parse("ada's key").expect("name"),
        scopes: vec![ApiScope::Admin],
        created_by: ada,
        created_at: now(),
        revoked_at: None,
    };
    store.create_api_key(&key, &"d".repeat(64)).await.expect("key");
    let later = now() + chrono::Duration::hours(1);
    let (mut to_ada, mut to_bob) = (new_delivery("to ada", later), new_delivery("to bob", later));
    to_ada.recipient_id = Some(ada.0);
    to_bob.recipient_id = Some(bob.0);
    store.create_deliveries(&[to_ada.clone(), to_bob.clone()]).await.expect("deliveries");

    let event = gone(ada);
    let AccountChange::Done(deleted) = store.delete_user(ada, &event, now()).await.expect("delete") else {
        panic!("one of two admins is deleted")
    };
    assert_eq!(deleted.id, ada);
    assert!(store.user_by_id(ada).await.expect("read").is_none());
    assert!(store.task(ada, task.id).await.expect("read").is_none(), "their task went with them");
    assert!(store.task(bob, kept.id).await.expect("read").is_some(), "another's task stays");
    assert_eq!(store.api_key_by_hash(&"d".repeat(64)).await.expect("read"), None, "their key went with them");
    let status = |d: Option<herald_core::delivery::Delivery>| d.expect("delivery").status;
    assert_eq!(status(store.delivery(to_ada.id).await.expect("read")), DeliveryStatus::Cancelled);
    assert_eq!(status(store.delivery(to_bob.id).await.expect("read")), DeliveryStatus::Pending);
    let outbox = store.read_outbox(0, 10).await.expect("outbox");
    assert_eq!(outbox.iter().map(|e| e.event.clone()).collect::<Vec<_>>(), [event], "the deletion is announced");
    assert_eq!(store.delete_user(ada, &gone(ada), now()).await.expect("again"), AccountChange::Gone);
}
