//! The feed's edges: cursors older than the retention, idle streams, a
//! subscriber that stops reading, and bad requests.

use super::*;

async fn a_cursor_older_than_the_retention_gets_a_snapshot(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let mut subscriber = Subscriber::default();
    subscriber.follow(&t.id);
    let mut stream = open(app, subscriber.request(false)).await;
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    drop(stream);

    for i in 0..3 {
        let user = app.user(&t, &format!("U{i}")).await;
        app.add_members(&t, &org, &[&user]).await.unwrap();
    }
    let compacted = app
        .store
        .compact_changes(chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert!(compacted >= 8);

    let mut stream = open(app, subscriber.request(false)).await;
    let first = next(&mut stream).await;
    assert!(
        matches!(first.event, Some(Event::SnapshotBegin(_))),
        "a compacted cursor restarts from a snapshot: {first:?}"
    );
    subscriber.apply(first);
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    assert_eq!(subscriber.states[&t.id].members.len(), 3);

    // A cursor from the future (a restored database) also starts over.
    let mut ahead = Subscriber::default();
    ahead.cursors.insert(t.id.clone(), 10_000);
    let mut stream = open(app, ahead.request(false)).await;
    assert!(matches!(
        next(&mut stream).await.event,
        Some(Event::SnapshotBegin(_))
    ));
}

async fn idle_streams_receive_checkpoints(app: &TestApp) {
    let t = app.tenant().await;
    let mut subscriber = Subscriber::default();
    subscriber.follow(&t.id);
    let mut stream = open(app, subscriber.request(false)).await;
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    let mut checkpoints = 0;
    while checkpoints < 3 {
        let message = next(&mut stream).await;
        if !matches!(message.event, Some(Event::CaughtUp(_))) {
            assert!(
                matches!(&message.event, Some(Event::Checkpoint(c)) if c.revision == 1 && c.time.is_some()),
                "{message:?}"
            );
            checkpoints += 1;
        }
        subscriber.apply(message);
    }
    assert_eq!(subscriber.caught_up, 1, "caught up once per stream");
}

async fn a_subscriber_that_stops_reading_is_cut_off_after_its_buffer(app: &TestApp) {
    // At the feed itself, below gRPC (whose HTTP/2 windows buffer a little more, but
    // also only a bounded amount): the watcher reads ahead only what fits the buffer.
    let t = app.tenant().await;
    for i in 0..40 {
        app.create_top_level(&t, &format!("G{i}")).await;
    }
    let settings = fast_feed();
    let tenant = TenantId(uuid::Uuid::parse_str(&t.id).unwrap());
    let subscription = Subscription {
        cursors: [(tenant, 1)].into(),
        all_tenants: false,
    };
    let (_closing, closing_signal) = tokio::sync::watch::channel(false);
    let places = feed::Places::new(&FeedSettings {
        max_streams: 1,
        reserved_streams: 0,
        ..Default::default()
    });
    let stream = feed::watch(
        app.store.clone(),
        settings.clone(),
        subscription,
        closing_signal,
        Some(places.admit("slow", false).unwrap()),
    )
    .await
    .unwrap();
    tokio::pin!(stream);
    // Read nothing for longer than the send timeout.
    tokio::time::sleep(settings.send_timeout * 3).await;
    assert!(
        places.admit("next", false).is_ok(),
        "the stream's place is free once it is cut off, while its subscriber still holds it"
    );
    let mut received = Vec::new();
    while let Some(item) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream answers")
    {
        received.push(item);
    }
    let (last, delivered) = received.split_last().expect("something was delivered");
    assert!(
        matches!(last, Err(FeedError::TooSlow(_))),
        "the stream ends saying why: {last:?}"
    );
    assert!(delivered.iter().all(Result::is_ok));
    assert!(
        delivered.len() <= settings.buffer + 1,
        "read ahead {} messages with a buffer of {}",
        delivered.len(),
        settings.buffer
    );
    let Some(Ok(FeedEvent::Changes {
        set: resume_after,
        continued: false,
    })) = delivered.last()
    else {
        panic!("{delivered:?}")
    };

    // The subscriber resumes from its cursor and loses nothing.
    let mut subscriber = Subscriber::default();
    subscriber
        .cursors
        .insert(t.id.clone(), resume_after.revision);
    let mut stream = open(app, subscriber.request(false)).await;
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    assert_eq!(subscriber.applied_events as i64, 41 - resume_after.revision);
}

async fn bad_watch_requests_are_refused(app: &TestApp) {
    let t = app.tenant().await;
    let mut feed = app.feed.clone();
    assert_error(
        feed.watch(pb::WatchRequest::default()).await,
        Code::InvalidArgument,
        Some("cursors"),
    );
    let bad_id = pb::WatchRequest {
        cursors: vec![pb::TenantCursor {
            tenant_id: "x".into(),
            revision: 0,
        }],
        all_tenants: false,
    };
    assert_error(
        feed.watch(bad_id).await,
        Code::InvalidArgument,
        Some("cursors[0].tenant_id"),
    );
    let negative = pb::WatchRequest {
        cursors: vec![pb::TenantCursor {
            tenant_id: t.id.clone(),
            revision: -1,
        }],
        all_tenants: false,
    };
    assert_error(
        feed.watch(negative).await,
        Code::InvalidArgument,
        Some("cursors[0].revision"),
    );
    let twice = pb::WatchRequest {
        cursors: vec![
            pb::TenantCursor {
                tenant_id: t.id.clone(),
                revision: 0,
            },
            pb::TenantCursor {
                tenant_id: t.id.clone(),
                revision: 1,
            },
        ],
        all_tenants: false,
    };
    assert_error(
        feed.watch(twice).await,
        Code::InvalidArgument,
        Some("cursors[1].tenant_id"),
    );
    let unknown = pb::WatchRequest {
        cursors: vec![pb::TenantCursor {
            tenant_id: uuid::Uuid::now_v7().to_string(),
            revision: 0,
        }],
        all_tenants: false,
    };
    assert_error(feed.watch(unknown).await, Code::NotFound, None);

    // More tenants than one stream may name: refused up front, naming the field,
    // not a database error.
    let many = |count: usize| pb::WatchRequest {
        cursors: (0..count)
            .map(|_| pb::TenantCursor {
                tenant_id: uuid::Uuid::now_v7().to_string(),
                revision: 0,
            })
            .collect(),
        all_tenants: false,
    };
    assert_error(
        feed.watch(many(cohort_directory::grpc::MAX_CURSORS + 1))
            .await,
        Code::InvalidArgument,
        Some("cursors"),
    );
    // With all_tenants the cursors are resume points, as many as the subscriber
    // holds: checked against the database in chunks (both databases cap a
    // statement's parameters; PostgreSQL at 65,535) and found missing.
    let mut resume_points = many(70_000);
    resume_points.all_tenants = true;
    assert_error(feed.watch(resume_points).await, Code::NotFound, None);
}

crate::on_both_backends!(
    feed = crate::feed::fast_feed();
    a_cursor_older_than_the_retention_gets_a_snapshot,
    idle_streams_receive_checkpoints,
    a_subscriber_that_stops_reading_is_cut_off_after_its_buffer,
    bad_watch_requests_are_refused,
);
