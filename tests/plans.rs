//! The hot queries use their indexes on realistic volumes (issue: "listing the newest 50
//! messages of a channel holding 100k messages uses an index scan").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox_tests::TestDatabase;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _, SimpleAsyncConnection as _};
use persistence::history::{HistoryPage, Position};

#[derive(diesel::QueryableByName)]
struct Plan {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
    line: String,
}

async fn plan(conn: &mut AsyncPgConnection, query: &str) -> String {
    let lines: Vec<Plan> = diesel::sql_query(format!("EXPLAIN {query}")).load(conn).await.unwrap();
    lines.into_iter().map(|p| p.line).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn history_and_replay_use_index_scans_on_a_hundred_thousand_messages() {
    let database = TestDatabase::create().await;
    let mut conn = AsyncPgConnection::establish(&database.url).await.unwrap();
    diesel::sql_query(
        "INSERT INTO users (id, username, email, display_name, password_hash) \
         VALUES ('00000000-0000-7000-8000-000000000001', 'seeder', 's@example.com', 'seeder', 'x')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO channels (id, name, owner_id, kind, last_seq) SELECT \
           (lpad(to_hex(n), 8, '0') || '-0000-7000-8000-000000000000')::uuid, 'c' || n, \
           '00000000-0000-7000-8000-000000000001', 'channel', CASE WHEN n = 1 THEN 100000 ELSE 0 END \
         FROM generate_series(1, 1000) n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO messages (id, channel_id, user_id, seq, content) SELECT gen_random_uuid(), \
           '00000001-0000-7000-8000-000000000000', '00000000-0000-7000-8000-000000000001', n, 'message ' || n \
         FROM generate_series(1, 100000) n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO channel_events (channel_id, seq, kind, data) SELECT \
           '00000001-0000-7000-8000-000000000000', n, 'message', '{}' FROM generate_series(1, 100000) n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("ANALYZE").execute(&mut conn).await.unwrap();

    let channel = "'00000001-0000-7000-8000-000000000000'";
    let newest = plan(
        &mut conn,
        &format!(
            "SELECT * FROM messages WHERE channel_id = {channel} AND parent_id IS NULL ORDER BY seq DESC LIMIT 51"
        ),
    )
    .await;
    assert!(newest.contains("Index Scan Backward using messages_channel_top_level"), "{newest}");
    let older = plan(
        &mut conn,
        &format!(
            "SELECT * FROM messages WHERE channel_id = {channel} AND parent_id IS NULL AND seq < 50000 ORDER BY seq DESC LIMIT 51"
        ),
    )
    .await;
    assert!(older.contains("messages_channel_top_level"), "{older}");
    let replay = plan(
        &mut conn,
        &format!("SELECT * FROM channel_events WHERE channel_id = {channel} AND seq > 99000 ORDER BY seq LIMIT 1001"),
    )
    .await;
    // The log is partitioned by day: replay reads each partition's primary key (only the
    // empty partitions of the coming days may be scanned, at no cost).
    assert!(
        replay.lines().any(|l| l.contains("Index Scan") && l.contains("_pkey") && l.contains("channel_events_p")),
        "{replay}"
    );
    for line in replay.lines().filter(|l| l.contains("Seq Scan")) {
        assert!(line.contains("cost=0.00..0.00"), "{replay}");
    }
    assert!(!newest.contains("Seq Scan"));

    // The history page the server runs (one statement: access, cursor, rows, authors,
    // attachments, reactions) walks the same partial index for each kind of page, and its
    // cursor-by-message-id lookup uses the primary key.
    let pages = [
        (HistoryPage::Latest, "NULL", "NULL"),
        (HistoryPage::Before(Position::Seq(50_000)), "50000", "NULL"),
        (HistoryPage::After(Position::Seq(99_000)), "99000", "NULL"),
        (
            HistoryPage::Before(Position::Message(domain::MessageId::from_uuid(uuid::Uuid::nil()))),
            "NULL",
            "'00000000-0000-0000-0000-000000000000'",
        ),
    ];
    for (page, seq, message) in pages {
        diesel::sql_query("DEALLOCATE ALL").execute(&mut conn).await.unwrap();
        diesel::sql_query(format!(
            "PREPARE page(uuid, uuid, bigint, uuid, bigint) AS {}",
            persistence::history::sql(page)
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        let page_plan = plan(
            &mut conn,
            &format!("EXECUTE page({channel}, '00000000-0000-7000-8000-000000000001', {seq}, {message}, 51)"),
        )
        .await;
        assert!(page_plan.contains("using messages_channel_top_level"), "{page:?}: {page_plan}");
        assert!(page_plan.contains("using channels_pkey"), "{page:?}: {page_plan}");
        assert!(!page_plan.contains("Seq Scan on messages"), "{page:?}: {page_plan}");
        assert!(!page_plan.contains("Seq Scan on channels"), "{page:?}: {page_plan}");
    }
}

#[tokio::test]
async fn mention_counts_and_the_mentions_page_use_indexes_on_a_hundred_thousand_messages() {
    let database = TestDatabase::create().await;
    let mut conn = AsyncPgConnection::establish(&database.url).await.unwrap();
    // Ten users, one channel of 100,000 messages by the first; every message mentions one of
    // the other nine in turn (100,000 mention rows, 11,111 of them the reader's).
    diesel::sql_query(
        "INSERT INTO users (id, username, email, display_name, password_hash) SELECT \
           ('00000000-0000-7000-8000-' || lpad(n::text, 12, '0'))::uuid, 'user' || n, n || '@example.com', 'u', 'x' \
         FROM generate_series(0, 9) n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO channels (id, name, owner_id, kind, last_seq) VALUES \
           ('00000001-0000-7000-8000-000000000000', 'general', '00000000-0000-7000-8000-000000000000', 'channel', 100000)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO memberships (channel_id, user_id) SELECT '00000001-0000-7000-8000-000000000000', id FROM users",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO messages (id, channel_id, user_id, seq, content) SELECT \
           ('01000000-0000-7000-8000-' || lpad(n::text, 12, '0'))::uuid, '00000001-0000-7000-8000-000000000000', \
           '00000000-0000-7000-8000-000000000000', n, 'hello @someone ' || n \
         FROM generate_series(1, 100000) n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO mentions (user_id, message_id, channel_id, seq) SELECT \
           ('00000000-0000-7000-8000-' || lpad((1 + n % 9)::text, 12, '0'))::uuid, \
           ('01000000-0000-7000-8000-' || lpad(n::text, 12, '0'))::uuid, '00000001-0000-7000-8000-000000000000', n \
         FROM generate_series(1, 100000) n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("ANALYZE").execute(&mut conn).await.unwrap();

    let reader = "'00000000-0000-7000-8000-000000000001'";
    let channel = "'00000001-0000-7000-8000-000000000000'";
    // `mention_count` of one channel in /api/channels/me: from the read marker on.
    let count = plan(
        &mut conn,
        &format!(
            "SELECT count(*) FROM mentions n WHERE n.channel_id = {channel} AND n.seq > 99000 AND n.user_id = {reader}"
        ),
    )
    .await;
    // An index-only scan once vacuumed; a bitmap scan of the same index right after the load.
    assert!(count.contains("mentions_unread"), "{count}");
    // GET /api/mentions: the caller's newest mentions, readable ones only.
    let page = plan(
        &mut conn,
        &format!(
            "SELECT messages.* FROM mentions JOIN messages ON messages.id = mentions.message_id \
             WHERE mentions.user_id = {reader} AND (EXISTS (SELECT 1 FROM memberships m \
               WHERE m.channel_id = mentions.channel_id AND m.user_id = {reader}) OR EXISTS (SELECT 1 FROM channels c \
               WHERE c.id = mentions.channel_id AND c.kind = 'channel' AND NOT c.is_private AND NOT EXISTS \
               (SELECT 1 FROM channel_bans b WHERE b.channel_id = c.id AND b.user_id = {reader}))) \
             ORDER BY mentions.message_id DESC LIMIT 51"
        ),
    )
    .await;
    assert!(page.contains("Index Scan Backward using mentions_pkey"), "{page}");
    assert!(!count.contains("Seq Scan") && !page.contains("Seq Scan on mentions"), "{page}");
}

/// A page of messages with no mentions, attachments, reactions or webhook looks nothing up
/// per row, whatever plan the statement got. The server keeps a prepared statement's generic
/// plan for the life of its pooled connection; one planned while `users` was a page long
/// scanned all of `users` for every row's mentions, which made pages 30 times slower once
/// there were thousands of users (found in the `just bench` sequence, issue 15).
#[tokio::test]
async fn a_page_of_plain_messages_looks_nothing_up_per_row_even_in_a_plan_made_when_tables_were_small() {
    let database = TestDatabase::create().await;
    let mut conn = AsyncPgConnection::establish(&database.url).await.unwrap();
    for statement in [
        "INSERT INTO users (id, username, email, display_name, password_hash) \
         VALUES ('00000000-0000-7000-8000-000000000001', 'seeder', 's@example.com', 'seeder', 'x')",
        "INSERT INTO channels (id, name, owner_id, kind, last_seq) VALUES \
         ('00000001-0000-7000-8000-000000000000', 'c', '00000000-0000-7000-8000-000000000001', 'channel', 60)",
        "INSERT INTO messages (id, channel_id, user_id, seq, content) SELECT gen_random_uuid(), \
           '00000001-0000-7000-8000-000000000000', '00000000-0000-7000-8000-000000000001', n, 'message ' || n \
         FROM generate_series(1, 60) n",
        "SET plan_cache_mode = force_generic_plan",
    ] {
        diesel::sql_query(statement).execute(&mut conn).await.unwrap();
    }
    diesel::sql_query(format!(
        "PREPARE page(uuid, uuid, bigint, uuid, bigint) AS {}",
        persistence::history::sql(HistoryPage::Latest)
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let run = "ANALYZE EXECUTE page('00000001-0000-7000-8000-000000000000', \
               '00000000-0000-7000-8000-000000000001', NULL, NULL, 51)";
    // The plan is made now, while every table is a page or less.
    plan(&mut conn, run).await;
    diesel::sql_query(
        "INSERT INTO users (id, username, email, display_name, password_hash) SELECT gen_random_uuid(), \
           'u' || n, n || '@example.com', 'u', 'x' FROM generate_series(1, 5000) n",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let page = plan(&mut conn, run).await;
    assert!(page.contains("rows=51"), "{page}");
    for table in ["users mu", "message_attachments ma", "files f", "reactions", "webhooks w"] {
        for line in page.lines().filter(|line| line.contains(&format!(" on {table} "))) {
            assert!(line.contains("never executed"), "{table} was read for a plain page:\n{page}");
        }
    }
}

/// A user, `poster`, alone in a channel, `general`, written straight into the database for
/// the tests that drive the writer without a server.
async fn one_channel_and_its_poster(url: &str) -> (domain::ChannelId, domain::UserId) {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    conn.batch_execute(
        "INSERT INTO users (id, username, email, display_name, password_hash) \
         VALUES ('00000000-0000-7000-8000-000000000001', 'poster', 'p@example.com', 'poster', 'x'); \
         INSERT INTO channels (id, name, owner_id, kind) \
         VALUES ('00000001-0000-7000-8000-000000000000', 'general', '00000000-0000-7000-8000-000000000001', 'channel'); \
         INSERT INTO memberships (channel_id, user_id) \
         VALUES ('00000001-0000-7000-8000-000000000000', '00000000-0000-7000-8000-000000000001')",
    )
    .await
    .unwrap();
    (
        domain::ChannelId::from_uuid("00000001-0000-7000-8000-000000000000".parse().unwrap()),
        domain::UserId::from_uuid("00000000-0000-7000-8000-000000000001".parse().unwrap()),
    )
}

/// Publishes nothing: the test reads what was written.
struct Nowhere;

impl domain::EventSink for Nowhere {
    fn publish(&self, _: Vec<domain::ChannelEvent>) {}
    fn notify(&self, _: Vec<domain::MentionNotice>) {}
}

#[derive(diesel::QueryableByName)]
struct Prepared {
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement: String,
}

/// A batch of posts holds its channel's lock for every round trip it makes. diesel prepares a
/// multi-row `INSERT` afresh for every batch (its text grows with the rows), which cost a round
/// trip each for the messages and the events; their statements are now fixed texts, prepared
/// once per connection whatever the batch's size, like the transaction's `BEGIN` and `COMMIT`.
#[tokio::test]
async fn posts_are_written_by_statements_prepared_once_per_connection() {
    let database = TestDatabase::create().await;
    let (channel, author) = one_channel_and_its_poster(&database.url).await;
    // One connection, so every batch runs on it and its prepared statements can be read.
    let db = persistence::Database::connect(&database.url, 1, 1, None).await.unwrap();
    let writer = persistence::writer::MessageWriter::spawn(db.clone(), std::sync::Arc::new(Nowhere), 1);
    let post = |content: String| {
        let writer = writer.clone();
        async move {
            let message = domain::NewMessage::parse(channel, author, &content, None, Vec::new(), None).unwrap();
            writer.post(message).await.unwrap()
        }
    };
    post("first".into()).await;
    // Batches of several sizes: posts sent together are committed together.
    for size in [3, 7] {
        futures_util::future::join_all((0..size).map(|n| post(format!("batch of {size}: {n}")))).await;
    }

    let mut pooled = db.get().await.unwrap();
    let prepared: Vec<Prepared> =
        diesel::sql_query("SELECT statement FROM pg_prepared_statements").load(&mut *pooled).await.unwrap();
    let statements: Vec<&str> = prepared.iter().map(|p| p.statement.as_str()).collect();
    for table in ["INSERT INTO messages", "INSERT INTO channel_events"] {
        let count = statements.iter().filter(|statement| statement.contains(table)).count();
        assert_eq!(count, 1, "{table}: one statement for batches of every size; prepared: {statements:?}");
    }
    // The transaction's own BEGIN and COMMIT too: `sql_query` would prepare them again, in a
    // round trip of their own, for every batch.
    for fixed in ["BEGIN", "COMMIT"] {
        assert!(statements.contains(&fixed), "{fixed} prepared once; prepared: {statements:?}");
    }
    let seqs: Vec<i64> = diesel::sql_query("SELECT seq FROM messages ORDER BY seq")
        .load::<Seq>(&mut *pooled)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.seq)
        .collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>(), "every post written once, in order");
}

#[derive(diesel::QueryableByName)]
struct Seq {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
}

/// Records the seqs the writer publishes, in the order it publishes them.
#[derive(Default)]
struct Published(std::sync::Mutex<Vec<i64>>);

impl domain::EventSink for Published {
    fn publish(&self, events: Vec<domain::ChannelEvent>) {
        self.0.lock().unwrap().extend(events.iter().map(|event| event.seq));
    }
    fn notify(&self, _: Vec<domain::MentionNotice>) {}
}

/// Posters that each post as soon as their previous post is answered make batches of every
/// size, back to back. Whatever the batching, the writer publishes every seq once, none before
/// a smaller one (a node's sockets rely on it: a gap costs a read of the log).
#[tokio::test]
async fn batches_of_every_size_publish_every_seq_once_in_order() {
    let database = TestDatabase::create().await;
    let (channel, author) = one_channel_and_its_poster(&database.url).await;
    let db = persistence::Database::connect(&database.url, 4, 1, None).await.unwrap();
    let published = std::sync::Arc::new(Published::default());
    let writer = persistence::writer::MessageWriter::spawn(db, published.clone(), 1);
    let answered: Vec<Vec<i64>> = futures_util::future::join_all((0..8).map(|poster| {
        let writer = writer.clone();
        async move {
            let mut seqs = Vec::new();
            for n in 0..50 {
                let message =
                    domain::NewMessage::parse(channel, author, &format!("{poster}/{n}"), None, Vec::new(), None)
                        .unwrap();
                seqs.push(writer.post(message).await.unwrap().message.seq);
            }
            seqs
        }
    }))
    .await;

    assert_eq!(*published.0.lock().unwrap(), (1..=400).collect::<Vec<_>>());
    for seqs in answered {
        assert!(seqs.is_sorted(), "one poster's posts got increasing seqs: {seqs:?}");
    }
}

#[derive(diesel::QueryableByName)]
struct IndexOptions {
    #[diesel(sql_type = diesel::sql_types::Text)]
    options: String,
}

/// The search index has no pending list (migration 000011). With one, the insert that found
/// it full merged all of it into the index inside its own statement: a batch of posts, with
/// its channel's lock held, for 110–190 ms about every 26,000 messages.
#[tokio::test]
async fn the_search_index_keeps_no_pending_list_for_a_post_to_merge() {
    let database = TestDatabase::create().await;
    let mut conn = AsyncPgConnection::establish(&database.url).await.unwrap();
    let found: IndexOptions = diesel::sql_query(
        "SELECT coalesce(array_to_string(reloptions, ','), '') AS options FROM pg_class WHERE relname = 'messages_search'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(found.options, "fastupdate=off");
}
