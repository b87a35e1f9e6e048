//! Change sets of every size against the message limit and the byte budget of
//! a subscriber's buffer.

use super::*;

/// The message limit of the small-message tests (the least the server takes);
/// the feed cuts its messages to half of it.
const SMALL_LIMIT: usize = 64 * 1024;

fn small_feed() -> FeedSettings {
    FeedSettings {
        // A few messages' worth: the byte budget, not the count, holds back.
        buffer_bytes: 48 * 1024,
        buffer: 32,
        ..fast_feed()
    }
}

/// `n` new users who may administer groups, in calls that fit a small message.
async fn eligible_users(app: &TestApp, t: &Tenant, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(200) {
        let users = app
            .client()
            .batch_create_users(pb::BatchCreateUsersRequest {
                tenant_id: t.id.clone(),
                users: (batch * 200..((batch + 1) * 200).min(n))
                    .map(|i| pb::batch_create_users_request::NewUser {
                        display_name: format!("{prefix} {i}"),
                        email: format!("{prefix}{i}@parts.test"),
                        roles: vec![crate::helpers::GA_GROUP_ADMIN as i32],
                        request_id: String::new(),
                    })
                    .collect(),
            })
            .await
            .unwrap()
            .into_inner()
            .users;
        ids.extend(users.into_iter().map(|u| u.id));
    }
    ids
}

/// Huge change sets (1,000 memberships, 1,000 administrators, 200 new users:
/// each over the 32 KiB a message may carry) mixed with tiny ones, under a
/// 64 KiB limit: a live subscriber, one that reconnects at random points (also
/// between the parts of a change set) and a fresh one from a snapshot (with an
/// administrator set larger than a message) all end in the database's state,
/// every revision applied once, whole and in order, no message over the budget.
async fn huge_and_tiny_change_sets_reach_every_subscriber_once_and_in_order(app: &TestApp) {
    use prost::Message as _;
    use rand::seq::IndexedRandom;

    let t = app.tenant().await;
    let pool = eligible_users(app, &t, "Pool", 1000).await;
    let big = app.create_top_level(&t, "Big").await.id;
    app.client()
        .set_group_administrators(pb::SetGroupAdministratorsRequest {
            tenant_id: t.id.clone(),
            group_id: big.clone(),
            user_ids: pool.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();

    let mut live = Subscriber::default();
    live.follow(&t.id);
    let mut live_stream = open(app, live.request(false)).await;
    let (stop_reading, mut stop) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut largest = 0;
        loop {
            tokio::select! {
                message = live_stream.message() => {
                    let message = message.expect("the feed failed").expect("the feed ended");
                    largest = largest.max(message.encoded_len());
                    live.apply(message);
                }
                _ = stop.changed() => break,
            }
        }
        (live, live_stream, largest)
    });

    let mut hopping = Subscriber::default();
    hopping.follow(&t.id);
    let mut rng = StdRng::seed_from_u64(11);
    let mut groups = vec![app.create_top_level(&t, "G0").await.id];
    let mut client = app.client();
    for op in 0..36 {
        let g = groups.choose(&mut rng).unwrap().clone();
        let some = |rng: &mut StdRng, at_least: usize| -> Vec<String> {
            let n = rng.random_range(at_least..=pool.len());
            pool.choose_multiple(rng, n).cloned().collect()
        };
        let result = match op % 9 {
            0 | 4 => client
                .add_group_members(pb::AddGroupMembersRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: some(&mut rng, 700),
                })
                .await
                .map(|_| ()),
            1 => client
                .remove_group_members(pb::RemoveGroupMembersRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: some(&mut rng, 1),
                })
                .await
                .map(|_| ()),
            2 => client
                .set_group_administrators(pb::SetGroupAdministratorsRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: some(&mut rng, 900),
                    etag: String::new(),
                })
                .await
                .map(|_| ()),
            3 => client
                .add_group_administrators(pb::AddGroupAdministratorsRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: some(&mut rng, 1),
                })
                .await
                .map(|_| ()),
            5 => client
                .remove_group_administrators(pb::RemoveGroupAdministratorsRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: some(&mut rng, 1),
                })
                .await
                .map(|_| ()),
            6 => {
                eligible_users(app, &t, &format!("New{op}-"), 200).await;
                Ok(())
            }
            7 => {
                let sub = app.subgroup(&t, &format!("Sub {op}"), &g).await.id;
                groups.push(sub);
                Ok(())
            }
            _ => client
                .set_inherited_role(pb::SetInheritedRoleRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    role: catalog_pb::Role::LmsValidator as i32,
                    etag: String::new(),
                })
                .await
                .map(|_| ()),
        };
        if let Err(status) = result {
            assert_eq!(
                status.code(),
                Code::FailedPrecondition,
                "op {op}: {status:?}"
            );
        }
        if op % 3 == 0 {
            // A subscriber that comes and goes, cut off anywhere: between the
            // parts of a change set, or inside a snapshot.
            let mut stream = open(app, hopping.request(false)).await;
            for _ in 0..rng.random_range(1..24) {
                hopping.apply(next(&mut stream).await);
            }
            hopping.gathering = None;
            if let Some((tenant, _)) = hopping.in_snapshot.take() {
                hopping.states.remove(&tenant);
                hopping.cursors.insert(tenant, 0);
            }
        }
    }

    let heads = heads(app, std::slice::from_ref(&t.id)).await;
    stop_reading.send(true).unwrap();
    let (mut live, mut live_stream, largest) = reader.await.unwrap();
    live.catch_up(&mut live_stream, &heads).await;
    let mut stream = open(app, hopping.request(false)).await;
    hopping.catch_up(&mut stream, &heads).await;
    let (fresh, revision) = snapshot_state(app, &t.id).await;

    assert_eq!(live.cursors[&t.id], revision);
    assert_eq!(hopping.cursors[&t.id], revision);
    assert_eq!(
        live.applied_events as i64,
        revision - live.last_snapshot,
        "every revision after the snapshot, once"
    );
    assert!(
        live.split_sets >= 10,
        "huge change sets came in parts: {}",
        live.split_sets
    );
    assert!(
        largest <= SMALL_LIMIT / 2,
        "a message of {largest} bytes, over half the limit"
    );
    assert_eq!(
        fresh.admins[&big].len(),
        1000,
        "a set larger than a message, whole"
    );
    assert_eq!(live.states[&t.id], fresh);
    assert_eq!(hopping.states[&t.id], fresh);
}

/// A subscriber that reads nothing holds at most `buffer_bytes` of the
/// directory's memory in messages, whatever their count: here ten change sets
/// of about 33 kB each against a 64 KiB budget (before, 32 messages of any size
/// were buffered: about 330 kB here, and megabytes with large change sets).
async fn a_stalled_subscriber_holds_no_more_than_its_byte_budget(app: &TestApp) {
    let t = app.tenant().await;
    let users = eligible_users(app, &t, "Member", 300).await;
    let before = app.revision(&t).await;
    for i in 0..10 {
        let group = app.create_top_level(&t, &format!("Group {i}")).await.id;
        app.client()
            .add_group_members(pb::AddGroupMembersRequest {
                tenant_id: t.id.clone(),
                group_id: group,
                user_ids: users.clone(),
            })
            .await
            .unwrap();
    }
    let settings = FeedSettings {
        buffer: 32,
        buffer_bytes: 64 * 1024,
        ..fast_feed()
    };
    let tenant = TenantId(uuid::Uuid::parse_str(&t.id).unwrap());
    let (_closing, closing_signal) = tokio::sync::watch::channel(false);
    let stream = feed::watch(
        app.store.clone(),
        settings.clone(),
        Subscription {
            cursors: [(tenant, before)].into(),
            all_tenants: false,
        },
        closing_signal,
        None,
    )
    .await
    .unwrap();
    tokio::pin!(stream);
    tokio::time::sleep(settings.send_timeout * 3).await;
    // What is buffered now, taken without waiting for more.
    let mut buffered = 0;
    let mut largest = 0;
    while let Some(Some(Ok(event))) = futures::FutureExt::now_or_never(stream.next()) {
        let bytes = feed::parts::event_bytes(&event);
        largest = largest.max(bytes);
        buffered += bytes;
    }
    assert!(largest > 30_000, "the change sets are large: {largest}");
    assert!(
        buffered <= settings.buffer_bytes,
        "{buffered} bytes buffered for a subscriber that read nothing, over {}",
        settings.buffer_bytes
    );
}

crate::on_both_backends!(
    feed = crate::feed::fast_feed();
    a_stalled_subscriber_holds_no_more_than_its_byte_budget,
);

/// At a small message limit (64 KiB, the least the server takes).
mod small_messages {
    use cohort_shared::serving::Limits;

    use crate::helpers::{spawn_app_limited, Backend};

    fn limits() -> Limits {
        Limits {
            max_message_bytes: super::SMALL_LIMIT,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn postgres() {
        let app = spawn_app_limited(Backend::Postgres, super::small_feed(), limits()).await;
        super::huge_and_tiny_change_sets_reach_every_subscriber_once_and_in_order(&app).await;
        app.cleanup().await;
    }

    #[tokio::test]
    async fn sqlite() {
        let app = spawn_app_limited(Backend::Sqlite, super::small_feed(), limits()).await;
        super::huge_and_tiny_change_sets_reach_every_subscriber_once_and_in_order(&app).await;
        app.cleanup().await;
    }
}
