//! The hot queries use their indexes on realistic volumes (issue: "listing the newest 50
//! messages of a channel holding 100k messages uses an index scan").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox_tests::TestDatabase;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
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
