//! Several servers on one database, each serving the feed.

use super::*;

async fn replicas_on_one_database_each_serve_the_feed(app: &TestApp) {
    // The replica's safety poll is far away: delivery must come from the commit signal.
    let settings = FeedSettings {
        poll_interval: Duration::from_secs(3600),
        checkpoint_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let replica = spawn_replica(app, settings).await;
    let t = app.tenant().await;
    let mut subscriber = Subscriber::default();
    subscriber.follow(&t.id);
    let mut stream = open(&replica, subscriber.request(false)).await;
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    let group = app
        .organization(&t, "Written on the other replica")
        .await
        .id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !subscriber.states[&t.id].groups.contains_key(&group) {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("delivered by notification");
        subscriber.apply(message.unwrap().unwrap());
    }
    replica.cleanup().await;
}

/// Replicas need a shared server database: PostgreSQL only.
#[tokio::test]
async fn postgres() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
    replicas_on_one_database_each_serve_the_feed(&app).await;
    app.cleanup().await;
}
