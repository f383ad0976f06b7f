//! The Store port's conformance suite, written once. `tests/it/store.rs` runs every function here
//! against every backend; an adapter passes when it behaves exactly as the port's contract says.

mod accounts;
mod calendar;
mod campaigns;
mod deliveries;
mod messages;
mod notices;
mod profiles;
mod rooms;
mod streams;
mod timeline;
mod webhooks;

use chrono::{DateTime, SubsecRound as _, Utc};
use herald_core::{
    change::ChangeEvent,
    store::{Constraint, Store, StoreError},
    task::{Attachment, AttachmentId, Description, Task, TaskId, TaskStatus, Title},
    user::{Email, NewUser, Role, User, UserId, UserName},
};

pub use accounts::*;
pub use calendar::*;
pub use campaigns::*;
pub use deliveries::*;
pub use messages::*;
pub use notices::*;
pub use profiles::*;
pub use rooms::*;
pub use streams::*;
pub use timeline::*;
pub use webhooks::*;

/// A user with a unique email, created now.
pub fn new_user(email: &str, role: Role) -> NewUser {
    NewUser {
        user: User {
            id: UserId::new(),
            email: Email::parse(email).expect("test email"),
            name: UserName::parse("Test User").expect("test name"),
            role,
            created_at: now(),
            phone: None,
            timezone: None,
        },
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
    }
}

/// The current instant at the stores' precision (microseconds).
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub async fn migrations_are_idempotent_and_ping_answers(store: &dyn Store) {
    store.migrate().await.expect("second migrate");
    store.ping().await.expect("ping");
}

pub async fn a_created_user_reads_back_identically(store: &dyn Store) {
    let new = new_user("ada@example.org", Role::Admin);
    store.create_user(&new).await.expect("create");

    let found = store.user_by_id(new.user.id).await.expect("by id").expect("present");
    assert_eq!(found, new.user, "every field, created_at to the microsecond, round-trips");

    let creds = store.credentials_by_email(&new.user.email).await.expect("by email").expect("present");
    assert_eq!(creds.user, new.user);
    assert_eq!(creds.password_hash, new.password_hash);
}

pub async fn unknown_users_are_none(store: &dyn Store) {
    assert!(store.user_by_id(UserId::new()).await.expect("by id").is_none());
    let email = Email::parse("nobody@example.org").expect("email");
    assert!(store.credentials_by_email(&email).await.expect("by email").is_none());
}

pub async fn a_taken_email_is_a_conflict_naming_its_constraint(store: &dyn Store) {
    store.create_user(&new_user("ada@example.org", Role::User)).await.expect("first");
    let err = store.create_user(&new_user("ada@example.org", Role::Admin)).await.expect_err("second must fail");
    assert!(err.is_conflict_on(Constraint::UsersEmail), "expected a conflict on the email, got {err:?}");
    let all = store.list_users(None, 10).await.expect("list");
    assert_eq!(all.len(), 1, "the refused write left nothing behind");
    assert_eq!(all[0].role, Role::User);
}

pub async fn racing_registrations_of_one_email_store_exactly_one(store: &dyn Store) {
    let attempts: Vec<_> = (0..8).map(|_| new_user("race@example.org", Role::User)).collect();
    let results = futures::future::join_all(attempts.iter().map(|u| store.create_user(u))).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "exactly one insert wins: {results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, StoreError::Conflict { .. })));
    assert_eq!(store.list_users(None, 100).await.expect("list").len(), 1);
}

pub async fn users_list_in_id_order_page_by_page(store: &dyn Store) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let new = new_user(&format!("user{i}@example.org"), Role::User);
        store.create_user(&new).await.expect("create");
        ids.push(new.user.id);
    }
    let first = store.list_users(None, 2).await.expect("page 1");
    assert_eq!(first.iter().map(|u| u.id).collect::<Vec<_>>(), ids[..2]);
    let second = store.list_users(Some(ids[1]), 2).await.expect("page 2");
    assert_eq!(second.iter().map(|u| u.id).collect::<Vec<_>>(), ids[2..4]);
    let last = store.list_users(Some(ids[3]), 2).await.expect("page 3");
    assert_eq!(last.iter().map(|u| u.id).collect::<Vec<_>>(), ids[4..]);
    assert!(store.list_users(Some(ids[4]), 2).await.expect("past the end").is_empty());
}

// ---- tasks, attachments and their events ----

/// A stored user, for rows that need an owner.
pub async fn owner(store: &dyn Store, email: &str) -> UserId {
    let new = new_user(email, Role::User);
    store.create_user(&new).await.expect("create owner");
    new.user.id
}

pub fn new_task(owner: UserId, title: &str) -> Task {
    let now = now();
    Task {
        id: TaskId::new(),
        owner,
        title: Title::parse(title).expect("title"),
        description: Description::parse("").expect("description"),
        status: TaskStatus::Todo,
        due_at: Some(now + chrono::Duration::days(1)),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

fn event(owner: UserId, kind: &str) -> ChangeEvent {
    ChangeEvent::for_user(owner, kind, serde_json::json!({"kind": kind}), now())
}

pub fn new_attachment(task: &Task, key: &str) -> Attachment {
    Attachment {
        id: AttachmentId::new(),
        task_id: task.id,
        owner: task.owner,
        file_name: "notes.txt".into(),
        content_type: "text/plain".into(),
        size: 42,
        sha256: "ab".repeat(32),
        storage_key: key.into(),
        created_at: now(),
    }
}

async fn kinds(store: &dyn Store) -> Vec<String> {
    store.read_outbox(0, 1000).await.expect("outbox").into_iter().map(|e| e.event.kind).collect()
}

pub async fn tasks_round_trip_and_stay_with_their_owner(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let task = new_task(ada, "Buy milk");
    store.create_task(&task, &[event(ada, "task.created")]).await.expect("create");
    assert_eq!(store.task(ada, task.id).await.expect("get"), Some(task.clone()), "every field round-trips");
    assert_eq!(store.task(bob, task.id).await.expect("get"), None, "another user sees nothing");
    assert!(store.list_tasks(bob, None, None, 10).await.expect("list").is_empty());
    assert!(store.delete_task(bob, task.id, &|_, _| vec![]).await.expect("delete").is_none());
    assert!(store.task(ada, task.id).await.expect("get").is_some(), "bob's delete did nothing");
}

pub async fn tasks_list_by_status_page_by_page(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut task = new_task(ada, &format!("task {i}"));
        if i % 2 == 1 {
            task.status = TaskStatus::Done;
        }
        store.create_task(&task, &[]).await.expect("create");
        ids.push(task.id);
    }
    let page = store.list_tasks(ada, None, None, 3).await.expect("list");
    assert_eq!(page.iter().map(|t| t.id).collect::<Vec<_>>(), ids[..3]);
    let rest = store.list_tasks(ada, None, Some(ids[2]), 3).await.expect("list");
    assert_eq!(rest.iter().map(|t| t.id).collect::<Vec<_>>(), ids[3..]);
    let done = store.list_tasks(ada, Some(TaskStatus::Done), None, 10).await.expect("list");
    assert_eq!(done.iter().map(|t| t.id).collect::<Vec<_>>(), [ids[1], ids[3]]);
}

pub async fn task_updates_compare_and_swap_their_version(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let task = new_task(ada, "Buy milk");
    store.create_task(&task, &[event(ada, "task.created")]).await.expect("create");

    let mut v2 = task.clone();
    v2.status = TaskStatus::Done;
    v2.version = 2;
    store.update_task(&v2, 1, &[event(ada, "task.updated")]).await.expect("update from v1");
    assert_eq!(store.task(ada, task.id).await.expect("get"), Some(v2.clone()));

    let mut stale = task.clone();
    stale.title = Title::parse("Stale write").expect("title");
    stale.version = 2;
    match store.update_task(&stale, 1, &[event(ada, "task.updated")]).await {
        Err(err) => assert!(err.is_conflict_on(Constraint::TaskVersion), "{err:?}"),
        other => panic!("a stale update must conflict, got {other:?}"),
    }
    let mut ghost = new_task(ada, "never stored");
    ghost.version = 2;
    assert!(matches!(store.update_task(&ghost, 1, &[]).await, Err(StoreError::NotFound)));
    assert_eq!(store.task(ada, task.id).await.expect("get"), Some(v2), "refused writes changed nothing");
    assert_eq!(kinds(store).await, ["task.created", "task.updated"], "refused writes wrote no events");
}

pub async fn a_failed_write_leaves_neither_row_nor_event(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let task = new_task(ada, "Buy milk");
    store.create_task(&task, &[event(ada, "task.created")]).await.expect("create");
    // The same id again: the insert fails, and the event with it.
    assert!(store.create_task(&task, &[event(ada, "task.created")]).await.is_err());
    // An event whose id is taken fails the whole transaction, task included.
    let other = new_task(ada, "Other");
    let first = store.read_outbox(0, 1).await.expect("outbox").remove(0).event;
    assert!(store.create_task(&other, &[first]).await.is_err());
    assert_eq!(store.task(ada, other.id).await.expect("get"), None);
    assert_eq!(kinds(store).await, ["task.created"]);
}

/// Task creations made at the same moment (which PostgreSQL writes together, several to a
/// statement) each get their own place: every task stored, every event once, each channel's
/// offsets 1..n without a gap in `seq` order, and a creation whose events span two channels
/// lands on both.
pub async fn concurrent_task_creations_get_gap_free_offsets(store: &dyn Store) {
    let mut owners = Vec::new();
    for i in 0..4 {
        owners.push(owner(store, &format!("writer{i}@example.org")).await);
    }
    let writes: Vec<(Task, Vec<ChangeEvent>)> = (0..200)
        .map(|i| {
            let owner = owners[i % owners.len()];
            let task = new_task(owner, &format!("task {i}"));
            let mut events = vec![event(owner, "task.created")];
            if i % 7 == 0 {
                events.push(event(owners[(i + 1) % owners.len()], "task.shared"));
            }
            (task, events)
        })
        .collect();
    let results = futures::future::join_all(writes.iter().map(|(task, events)| store.create_task(task, events))).await;
    for result in results {
        result.expect("every concurrent creation is stored");
    }
    for (task, _) in &writes {
        assert_eq!(store.task(task.owner, task.id).await.expect("get").as_ref(), Some(task));
    }
    let outbox = store.read_outbox(0, 1000).await.expect("outbox");
    let written: usize = writes.iter().map(|(_, events)| events.len()).sum();
    assert_eq!(outbox.len(), written, "every event once");
    let mut ids: Vec<_> = outbox.iter().map(|e| e.event.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), written, "no event twice");
    let mut offsets: std::collections::BTreeMap<herald_core::stream::StreamName, Vec<i64>> =
        std::collections::BTreeMap::new();
    for e in &outbox {
        offsets.entry(e.event.stream).or_default().push(e.stream_offset);
    }
    assert_eq!(offsets.len(), owners.len());
    for (stream, offsets) in offsets {
        let expected: Vec<i64> = (1..=i64::try_from(offsets.len()).expect("count")).collect();
        assert_eq!(offsets, expected, "{stream}: offsets 1..n in seq order, no gap");
    }
}

/// A creation that cannot be stored (an unknown owner, a taken id) among creations made at the
/// same moment fails alone: the others are stored with their events, gap-free.
pub async fn a_bad_task_among_concurrent_creations_fails_alone(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let taken = new_task(ada, "first");
    store.create_task(&taken, &[event(ada, "task.created")]).await.expect("create");
    let ghost = UserId::new();
    let mut writes: Vec<(Task, Vec<ChangeEvent>)> =
        (0..30).map(|i| (new_task(ada, &format!("task {i}")), vec![event(ada, "task.created")])).collect();
    writes.insert(10, (new_task(ghost, "orphan"), vec![event(ghost, "task.created")]));
    writes.insert(20, (taken.clone(), vec![event(ada, "task.created")]));
    let results = futures::future::join_all(writes.iter().map(|(task, events)| store.create_task(task, events))).await;
    for (i, result) in results.iter().enumerate() {
        match i {
            10 | 20 => assert!(result.is_err(), "write {i} must fail: {result:?}"),
            _ => assert!(result.is_ok(), "write {i} must be stored: {result:?}"),
        }
    }
    assert_eq!(store.task(ghost, writes[10].0.id).await.expect("get"), None);
    let outbox = store.read_outbox(0, 1000).await.expect("outbox");
    assert_eq!(outbox.len(), 30 + 1, "the good ones' events and the first task's, none of the bad ones'");
    let offsets: Vec<i64> = outbox.iter().map(|e| e.stream_offset).collect();
    assert_eq!(offsets, (1..=31).collect::<Vec<i64>>(), "one channel, no gap");
}

pub async fn deleting_a_task_takes_its_attachments_and_reports_them(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let task = new_task(ada, "Buy milk");
    store.create_task(&task, &[]).await.expect("create");
    let a1 = new_attachment(&task, "key1");
    let a2 = new_attachment(&task, "key2");
    for a in [&a1, &a2] {
        store.add_attachment(a, &[event(ada, "attachment.added")]).await.expect("attach");
    }
    assert_eq!(store.list_attachments(ada, task.id).await.expect("list"), Some(vec![a1.clone(), a2.clone()]));

    let events = |t: &Task, atts: &[Attachment]| {
        let mut events: Vec<ChangeEvent> = atts.iter().map(|_| event(t.owner, "attachment.deleted")).collect();
        events.push(event(t.owner, "task.deleted"));
        events
    };
    let (deleted, attachments) = store.delete_task(ada, task.id, &events).await.expect("delete").expect("present");
    assert_eq!(deleted.id, task.id);
    assert_eq!(attachments, vec![a1.clone(), a2.clone()]);
    assert_eq!(store.attachment(ada, a1.id).await.expect("get"), None, "attachments went with the task");
    assert_eq!(store.list_attachments(ada, task.id).await.expect("list"), None);
    assert!(store.referenced_storage_keys(&["key1".into(), "key2".into()]).await.expect("keys").is_empty());
    assert_eq!(
        kinds(store).await,
        ["attachment.added", "attachment.added", "attachment.deleted", "attachment.deleted", "task.deleted"]
    );
}

pub async fn attachments_belong_to_their_owners_task(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let task = new_task(ada, "Buy milk");
    store.create_task(&task, &[]).await.expect("create");

    let mut foreign = new_attachment(&task, "bobs-key");
    foreign.owner = bob;
    assert!(matches!(store.add_attachment(&foreign, &[]).await, Err(StoreError::NotFound)));
    let orphan = new_attachment(&new_task(ada, "never stored"), "lost-key");
    assert!(matches!(store.add_attachment(&orphan, &[]).await, Err(StoreError::NotFound)));

    let a = new_attachment(&task, "key1");
    store.add_attachment(&a, &[]).await.expect("attach");
    assert_eq!(store.attachment(ada, a.id).await.expect("get"), Some(a.clone()));
    assert_eq!(store.attachment(bob, a.id).await.expect("get"), None);
    assert!(store.delete_attachment(bob, a.id, &|_| vec![]).await.expect("delete").is_none());
    let keys = store.referenced_storage_keys(&["key1".into(), "bobs-key".into(), "x".into()]).await.expect("keys");
    assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["key1"]);

    let gone =
        store.delete_attachment(ada, a.id, &|a| vec![event(a.owner, "attachment.deleted")]).await.expect("delete");
    assert_eq!(gone, Some(a));
    assert!(store.referenced_storage_keys(&["key1".into()]).await.expect("keys").is_empty());
    assert_eq!(kinds(store).await, ["attachment.deleted"]);
}

pub async fn outbox_events_read_back_in_order_with_every_field(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let task = new_task(ada, "Buy milk");
    let mut e1 = event(ada, "task.created");
    e1.trace_context = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    let e2 = event(ada, "task.updated");
    store.create_task(&task, &[e1.clone(), e2.clone()]).await.expect("create");
    let read = store.read_outbox(0, 10).await.expect("outbox");
    assert_eq!(read.iter().map(|e| e.event.clone()).collect::<Vec<_>>(), [e1, e2]);
    assert!(read[0].seq < read[1].seq);
    assert!(read.iter().all(|e| e.published_at.is_none()));
    assert_eq!(store.read_outbox(read[0].seq, 10).await.expect("after").len(), 1);
}

pub async fn published_events_are_pruned_after_retention_and_no_others(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let task = new_task(ada, "Buy milk");
    let events: Vec<ChangeEvent> = (0..4).map(|_| event(ada, "task.updated")).collect();
    store.create_task(&task, &events).await.expect("create");
    let read = store.read_outbox(0, 10).await.expect("outbox");
    let (old, recent) = (now() - chrono::Duration::hours(48), now());
    store.mark_published(&[read[0].seq, read[1].seq], old).await.expect("mark old");
    store.mark_published(&[read[2].seq], recent).await.expect("mark recent");
    let offsets: Vec<i64> = read.iter().map(|e| e.stream_offset).collect();
    assert_eq!(offsets, [1, 2, 3, 4], "gap-free offsets within the channel");

    let pruned = store.prune_published(now() - chrono::Duration::hours(24), 100).await.expect("prune");
    assert_eq!(pruned, 2);
    let left: Vec<i64> = store.read_outbox(0, 10).await.expect("outbox").iter().map(|e| e.seq).collect();
    assert_eq!(left, [read[2].seq, read[3].seq], "recent and unpublished events stay");
    // On PostgreSQL an event shows once every transaction older than its own has ended, in any
    // schema: another test's transaction may hold it back for a moment.
    let mut pending = 0;
    for _ in 0..100 {
        pending = store.unpublished_events(10).await.expect("pending").events.len();
        if pending == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(pending, 1);
    assert_eq!(store.oldest_unpublished().await.expect("oldest"), Some(read[3].event.created_at));
}

pub async fn a_lease_is_held_by_one_holder_until_released_or_expired(store: &dyn Store) {
    let ttl = std::time::Duration::from_millis(300);
    assert!(store.acquire_lease("job", "a", ttl).await.expect("a takes"));
    assert!(store.acquire_lease("job", "a", ttl).await.expect("a renews"));
    assert!(!store.acquire_lease("job", "b", ttl).await.expect("b waits"));
    assert!(store.acquire_lease("other", "b", ttl).await.expect("leases are per name"));
    store.release_lease("job", "b").await.expect("b cannot release a's lease");
    assert!(!store.acquire_lease("job", "b", ttl).await.expect("still a's"));
    store.release_lease("job", "a").await.expect("a releases");
    assert!(store.acquire_lease("job", "b", ttl).await.expect("b takes the released lease"));
    tokio::time::sleep(ttl + std::time::Duration::from_millis(100)).await;
    assert!(store.acquire_lease("job", "a", ttl).await.expect("a takes the expired lease"));
}
