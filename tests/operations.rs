//! docs/api.md sections 1 and 8: request ids, JSON errors everywhere, health, docs, metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use blackbox_tests::TestApp;
use serde_json::json;

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let generated = app.client.get("/healthz", None).await;
    assert_eq!(generated.header("x-request-id").map(str::len), Some(36));
    let echoed = app
        .client
        .send(app.client.http.get(app.client.url("/api/users/me")).header("x-request-id", "trace-me-123"))
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("trace-me-123"));
    echoed.assert_error(401, "not_authenticated");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::spawn().await;
    app.client.get("/api/nope", None).await.assert_error(404, "not_found");
    app.client.get("/nope", None).await.assert_error(404, "not_found");
    let wrong_method = app.client.delete("/api/auth/login", None).await;
    wrong_method.assert_error(405, "method_not_allowed");
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    assert!(wrong_method.header("x-request-id").is_some());
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    assert_eq!(app.client.get("/healthz", None).await.assert_status(200)["status"], "ok");
    assert_eq!(app.client.get("/readyz", None).await.assert_status(200)["status"], "ready");
}

#[tokio::test]
async fn docs_render_from_the_server_alone() {
    let app = TestApp::spawn().await;
    let spec = app.client.get("/openapi.json", None).await;
    let spec = spec.assert_status(200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(spec["paths"]["/api/auth/register"]["post"].is_object());
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());

    for page in ["/docs/", "/redoc"] {
        let html = app.client.get(page, None).await;
        assert_eq!(html.status.as_u16(), 200, "{page}");
        // Every script and stylesheet the page loads must come from this server.
        for reference in references(&html.text) {
            assert!(!reference.starts_with("http"), "{page} loads {reference} from elsewhere");
            let absolute = if reference.starts_with('/') { reference.clone() } else { format!("/docs/{reference}") };
            let asset = app.client.get(&absolute, None).await;
            assert_eq!(asset.status.as_u16(), 200, "{page} → {absolute}");
            assert!(!asset.text.is_empty());
        }
    }
    let initializer = app.client.get("/docs/swagger-initializer.js", None).await;
    assert!(initializer.text.contains("/openapi.json"));
}

/// `src="..."` and `href="..."` values in a page.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attribute) {
            rest = &rest[start + attribute.len()..];
            if let Some(end) = rest.find('"') {
                let value = &rest[..end];
                if !value.is_empty() && !value.starts_with('#') && !value.starts_with("data:") {
                    found.push(value.trim_start_matches("./").to_owned());
                }
                rest = &rest[end..];
            }
        }
    }
    found
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let app = TestApp::spawn().await;
    app.client.get("/healthz", None).await;
    let metrics = app.client.get("/metrics", None).await;
    assert_eq!(metrics.status.as_u16(), 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    assert!(metrics.text.contains("http_requests_total"), "{}", metrics.text);
    assert!(metrics.text.contains("db_pool_in_use"));
    assert!(metrics.text.contains("websocket_connections"));
}

/// bcrypt at the production cost runs off the executor: fifty logins at once must not stall
/// a health check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_at_cost_12_do_not_stall_the_server() {
    let app = TestApp::spawn_with(|s| {
        s.bcrypt_cost = 12;
        s.workers = 2;
    })
    .await;
    let register = app
        .client
        .post(
            "/api/auth/register",
            None,
            &json!({"username": "johndoe", "email": "j@example.com", "password": "secretpass"}),
        )
        .await;
    register.assert_status(200);

    let mut logins = Vec::new();
    for _ in 0..50 {
        let client = app.client.clone();
        logins.push(tokio::spawn(async move {
            client.post("/api/auth/login", None, &json!({"username": "johndoe", "password": "secretpass"})).await.status
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        app.client.get("/healthz", None).await.assert_status(200);
        worst = worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(worst < Duration::from_millis(100), "/healthz took {worst:?} during the logins");
    for login in logins {
        assert_eq!(login.await.unwrap().as_u16(), 200);
    }
}

/// The pool hands a connection out again without a test query (`RecyclingMethod::Fast`), so
/// a connection whose backend was terminated (a failover, `pg_terminate_backend`, a restart)
/// must be noticed as closed and replaced, never given to a request.
#[tokio::test]
async fn pooled_connections_are_replaced_once_past_their_lifetime() {
    use diesel_async::RunQueryDsl as _;

    #[derive(diesel::QueryableByName)]
    struct Backend {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }

    let app = TestApp::spawn_with(|settings| settings.database_max_lifetime_seconds = 1).await;
    let alice = app.user("alice").await;
    futures_util::future::join_all((0..8).map(|_| app.client.get("/api/channels", Some(&alice)))).await;
    let name = app.database.as_ref().unwrap().name.clone();
    let mut admin = app.db().await;
    let backends = format!("SELECT pid FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()");
    let before: Vec<i32> =
        diesel::sql_query(&backends).load::<Backend>(&mut admin).await.unwrap().into_iter().map(|b| b.pid).collect();
    assert!(!before.is_empty());

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let read = app.client.get("/api/channels", Some(&alice)).await;
        assert_eq!(read.status.as_u16(), 200, "{}", read.text);
        let now: Vec<i32> = diesel::sql_query(&backends)
            .load::<Backend>(&mut admin)
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.pid)
            .collect();
        if !now.is_empty() && now.iter().all(|pid| !before.contains(pid)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "connections from before were kept: {before:?} → {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn requests_succeed_after_every_database_connection_is_terminated() {
    use diesel_async::RunQueryDsl as _;

    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let general = app.client.post("/api/channels", Some(&alice), &json!({"name": "general"})).await;
    let general = general.body["id"].as_str().unwrap().to_owned();
    // Several requests at once hold several of the pool's connections.
    futures_util::future::join_all((0..16).map(|_| app.client.get("/api/channels", Some(&alice)))).await;

    let name = app.database.as_ref().unwrap().name.clone();
    let mut admin = app.db().await;
    let terminated = diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    assert!(terminated >= 2, "the server held connections to terminate: {terminated}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let reads = futures_util::future::join_all((0..16).map(|_| app.client.get("/api/channels", Some(&alice)))).await;
    for read in &reads {
        assert_eq!(read.status.as_u16(), 200, "{}", read.text);
    }
    let post = json!({"channel_id": general, "content": "after the cut"});
    let posted = app.client.post("/api/chat/messages", Some(&alice), &post).await;
    assert_eq!(posted.status.as_u16(), 201, "{}", posted.text);
}
