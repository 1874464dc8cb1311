//! What a newcomer and an operator meet first, checked on the real binary: the start banner,
//! HTTP method basics on every route (`HEAD`, 405 with `Allow`), the README's two-node recipe
//! run as written, and the `chat-client` the README points to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blackbox_tests::ws::WsClient;
use blackbox_tests::{Client, TestDatabase};
use reqwest::Method;
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_chat-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_chat-client");
const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running process of one of the package's binaries, its output collected as it comes.
/// Killed when dropped.
struct Process {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Process {
    /// Runs `binary` with `args`, a clean environment plus `env`, in a temporary directory
    /// (so no `.env` or `./data` of the developer's tree is used).
    fn spawn(binary: &str, args: &[&str], env: &[(String, String)]) -> Self {
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        Self { child, output }
    }

    fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().unwrap()
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The first output line containing `needle`, waiting for it.
    async fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.output().lines().find(|line| line.contains(needle)) {
                return line.to_owned();
            }
            assert!(Instant::now() < deadline, "no line with {needle:?} in:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server process on `port` and a client for it, once `/readyz` says it is ready.
struct Node {
    process: Process,
    client: Client,
    port: u16,
}

impl Node {
    async fn start(env: &[(String, String)]) -> Self {
        let port: u16 = env.iter().find(|(key, _)| key == "PORT").map(|(_, port)| port.parse().unwrap()).unwrap();
        let mut process = Process::spawn(SERVER, &[], env);
        let client = Client::new(&format!("http://127.0.0.1:{port}"));
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(reply) = client.http.get(client.url("/readyz")).send().await
                && reply.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("the server exited ({status}):\n{}", process.output());
            }
            assert!(Instant::now() < deadline, "the server never became ready:\n{}", process.output());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { process, client, port }
    }

    fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/api/ws?token={token}", self.port)
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
}

/// Settings for a quick test server: cheap bcrypt, no rate limits.
fn quick(database: &TestDatabase, port: u16) -> Vec<(String, String)> {
    env(&[
        ("DATABASE_URL", &database.url),
        ("PORT", &port.to_string()),
        ("BCRYPT_COST", "4"),
        ("RATE_LIMIT_AUTH_PER_MINUTE", "0"),
        ("RATE_LIMIT_WRITES_PER_SECOND", "0"),
        ("SECRET_KEY", "a-secret-key-long-enough-for-hs256-0123456789"),
    ])
}

#[tokio::test]
async fn the_banner_says_url_database_redis_node_and_docs_without_colour_codes() {
    let database = TestDatabase::create().await;
    let port = free_port();
    let files = std::env::temp_dir().join(format!("chat-banner-files-{port}"));
    let namespace = format!("banner-{port}");
    let mut settings = quick(&database, port);
    settings.extend(env(&[
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_NAMESPACE", &namespace),
        ("LOG_FORMAT", "pretty"),
        ("FILE_STORAGE_DIR", files.to_str().unwrap()),
    ]));
    let node = Node::start(&settings).await;

    let banner = node.process.line_with(" is ready on ").await;
    let url = format!("http://127.0.0.1:{port}");
    for expected in [
        format!("url={url}"),
        format!("database=postgres://127.0.0.1:5432/{}", database.name),
        "database_origin=DATABASE_URL".to_owned(),
        format!("redis=on (redis://127.0.0.1:6379, namespace {namespace})"),
        format!("docs={url}/docs"),
    ] {
        assert!(banner.contains(&expected), "{expected:?} in the banner: {banner}");
    }
    let node_id = banner.split("node=").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap();
    assert!(uuid_like(node_id), "a node id in the banner: {banner}");
    // Output goes to a pipe here, not a terminal: no colour escape codes in it.
    assert!(!node.process.output().contains('\u{1b}'), "escape codes:\n{}", node.process.output());
    // No upload yet, so nothing was created under FILE_STORAGE_DIR.
    assert!(!files.exists(), "{} exists before any upload", files.display());

    let token = node.client.register("first").await;
    node.client.upload(Some(&token), "a.txt", b"hello".to_vec()).await.assert_status(201);
    assert!(files.is_dir());
    let _ = std::fs::remove_dir_all(&files);
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// The paths of the server's own OpenAPI document and the methods documented for each.
async fn documented_routes(client: &Client) -> Vec<(String, BTreeSet<String>)> {
    let spec = client.get("/openapi.json", None).await;
    let paths = spec.assert_status(200)["paths"].as_object().unwrap().clone();
    assert!(paths.len() > 30, "the document lists every route");
    paths
        .into_iter()
        .map(|(path, item)| (path, item.as_object().unwrap().keys().map(|m| m.to_ascii_uppercase()).collect()))
        .collect()
}

/// Whether an OpenAPI path template (`/api/channels/{id}`) matches a concrete path.
fn template_matches(template: &str, path: &str) -> bool {
    let (template, path): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    template.len() == path.len()
        && template.iter().zip(&path).all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

/// Every `{parameter}` of a template replaced by `value(parameter name, template)`.
fn fill(template: &str, value: impl Fn(&str, &str) -> String) -> String {
    template
        .split('/')
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => value(name, template),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The documentation pages, which are not in the OpenAPI document they serve.
const DOC_PAGES: [&str; 4] = ["/openapi.json", "/docs/", "/redoc", "/redoc/redoc.standalone.js"];

#[tokio::test]
async fn a_wrong_method_is_405_with_allow_on_every_route_template() {
    let database = TestDatabase::create().await;
    let node = Node::start(&quick(&database, free_port())).await;
    let routes = documented_routes(&node.client).await;
    let mut checked = 0;
    for (template, _) in &routes {
        // Any id will do: the method is refused before anything is looked up.
        let path = fill(template, |_, _| uuid::Uuid::new_v4().to_string());
        // Another template may match the same path (`/api/channels/me` is also
        // `/api/channels/{id}`); the path answers the methods of all of them.
        let mut allowed: BTreeSet<String> = routes
            .iter()
            .filter(|(other, _)| template_matches(other, &path))
            .flat_map(|(_, methods)| methods.iter().cloned())
            .collect();
        if allowed.contains("GET") {
            allowed.insert("HEAD".to_owned());
        }
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if allowed.contains(method) {
                continue;
            }
            let reply = node
                .client
                .send(node.client.request(Method::from_bytes(method.as_bytes()).unwrap(), &path, None))
                .await;
            reply.assert_error(405, "method_not_allowed");
            let allow: BTreeSet<String> =
                reply.header("allow").unwrap_or_default().split(',').map(|m| m.trim().to_owned()).collect();
            assert_eq!(allow, allowed, "Allow of {method} {path}");
            checked += 1;
        }
    }
    assert!(checked > 60, "only {checked} wrong methods tried");
    for page in DOC_PAGES {
        let reply = node.client.post(page, None, &json!({})).await;
        reply.assert_error(405, "method_not_allowed");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{page}");
    }
    // A path no template matches stays a 404, whatever the method.
    node.client.delete("/api/nope", None).await.assert_error(404, "not_found");
    node.client.get("/api/channels/x/y/z", None).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn head_is_get_without_a_body_on_every_get_route() {
    let database = TestDatabase::create().await;
    let node = Node::start(&quick(&database, free_port())).await;
    let client = &node.client;
    // Real ids, so that most GETs find something and answer 200 with a body.
    let token = client.register("alice").await;
    let channel = client.post("/api/channels", Some(&token), &json!({"name": "general"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let message =
        client.post("/api/chat/messages", Some(&token), &json!({"content": "hello", "channel_id": channel})).await.body
            ["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let file = client.upload(Some(&token), "a.txt", b"hello".to_vec()).await.body["id"].as_str().unwrap().to_owned();
    let id_for = |name: &str, template: &str| match name {
        "username" => "alice".to_owned(),
        "channel_id" => channel.clone(),
        _ if template.starts_with("/api/channels/") => channel.clone(),
        _ if template.starts_with("/api/chat/messages/") => message.clone(),
        _ if template.starts_with("/api/files/") => file.clone(),
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let mut paths: Vec<String> = documented_routes(client)
        .await
        .into_iter()
        .filter(|(_, methods)| methods.contains("GET"))
        .map(|(template, _)| fill(&template, id_for))
        .collect();
    paths.extend(DOC_PAGES.map(str::to_owned));

    let mut found = 0;
    for path in &paths {
        let get = client.send(client.request(Method::GET, path, Some(&token))).await;
        let head = client.send(client.request(Method::HEAD, path, Some(&token))).await;
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert_eq!(head.header("content-type"), get.header("content-type"), "HEAD {path}");
        assert!(head.text.is_empty(), "HEAD {path} sent a body");
        if get.status.is_success() && !get.text.is_empty() {
            found += 1;
        }
    }
    assert!(found >= 15, "only {found} GET routes answered with a body");
    // A body that does not change between requests: HEAD announces its exact length.
    let get = client.get("/openapi.json", None).await;
    let head = client.send(client.request(Method::HEAD, "/openapi.json", None)).await;
    assert_eq!(head.header("content-length").map(str::to_owned), Some(get.text.len().to_string()));
}

/// The first ```sh block under `heading` in the README.
fn readme_block(heading: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = &readme[readme.find(heading).unwrap_or_else(|| panic!("README has {heading:?}"))..];
    let block = &section[section.find("```sh\n").unwrap() + 6..];
    block[..block.find("```").unwrap()].to_owned()
}

/// The README's two-node recipe: its `export` lines run by bash (so `$(...)` runs as
/// written), its node lines as processes of the real binary. The test changes only what
/// must differ on a shared machine: free ports, a fresh database, and a Redis namespace of
/// its own (Redis pub/sub is not scoped by database index, the namespace is what keeps
/// parallel runs apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_two_node_recipe_shares_tokens_and_events() {
    let recipe = readme_block("## Two nodes");
    let mut exports = Vec::new();
    let mut nodes = Vec::new();
    for line in recipe.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
        if line.starts_with("export ") {
            exports.push(line.to_owned());
        } else if line.starts_with("cargo build") {
            // Cargo built the binary for this test already.
        } else {
            let command = line.trim_end_matches('&').trim();
            let (assignments, binary) = command.rsplit_once(' ').unwrap();
            assert!(binary.ends_with("/chat-server"), "a node line runs the server: {line}");
            nodes.push(assignments.to_owned());
        }
    }
    assert_eq!(nodes.len(), 2, "two nodes in the recipe:\n{recipe}");
    for node in &nodes {
        assert!(node.starts_with("PORT="), "each node has its own port: {node}");
    }

    let names: Vec<String> =
        exports.iter().map(|line| line["export ".len()..].split('=').next().unwrap().to_owned()).collect();
    for required in ["SECRET_KEY", "REDIS_URL", "DATABASE_URL"] {
        assert!(names.iter().any(|name| name == required), "the recipe sets {required}:\n{recipe}");
    }
    let script = format!("{}\nenv -0", exports.join("\n"));
    let output = Command::new("bash")
        .args(["-euc", &script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .output()
        .unwrap();
    assert!(output.status.success(), "the recipe's exports run: {}", String::from_utf8_lossy(&output.stderr));
    let evaluated = String::from_utf8(output.stdout).unwrap();
    let mut shared: Vec<(String, String)> = evaluated
        .split('\0')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| names.iter().any(|name| name == key))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    assert!(shared.iter().any(|(key, value)| key == "SECRET_KEY" && value.len() >= 32), "a usable key: {shared:?}");

    let database = TestDatabase::create().await;
    let namespace = format!("recipe-{}", uuid::Uuid::new_v4().simple());
    for (key, value) in &mut shared {
        if key == "DATABASE_URL" {
            value.clone_from(&database.url);
        }
    }
    shared.extend(env(&[
        ("REDIS_NAMESPACE", &namespace),
        ("BCRYPT_COST", "4"),
        ("FILE_STORAGE_DIR", std::env::temp_dir().join(&namespace).to_str().unwrap()),
    ]));
    let start = |shared: &[(String, String)]| {
        let mut settings = shared.to_vec();
        settings.push(("PORT".to_owned(), free_port().to_string()));
        async move { Node::start(&settings).await }
    };
    let (one, two) = (start(&shared).await, start(&shared).await);

    // A token signed by node 1 is good on node 2.
    let alice = one.client.register("alice").await;
    assert_eq!(two.client.get("/api/auth/me", Some(&alice)).await.assert_status(200)["username"], "alice");
    // A message posted through node 1 reaches a socket on node 2.
    let channel = one.client.post("/api/channels", Some(&alice), &json!({"name": "general"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut socket = WsClient::connect(&two.ws_url(&alice)).await.unwrap();
    assert_eq!(socket.next_json().await["type"], "ready");
    one.client
        .post("/api/chat/messages", Some(&alice), &json!({"content": "across nodes", "channel_id": channel}))
        .await
        .assert_status(201);
    let message = socket.next_of("message").await;
    assert_eq!(message["data"]["content"], "across nodes");

    // Why the recipe shares the key: a node with a key of its own refuses the token.
    let mut own_key = shared.clone();
    own_key.retain(|(key, _)| key != "SECRET_KEY");
    own_key.push(("SECRET_KEY".to_owned(), "another-key-of-another-deployment-0123456789".to_owned()));
    let stranger = start(&own_key).await;
    stranger.client.get("/api/auth/me", Some(&alice)).await.assert_error(401, "invalid_token");
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&namespace));
}

#[tokio::test]
async fn chat_client_prints_frames_and_sends_the_lines_typed() {
    let database = TestDatabase::create().await;
    let node = Node::start(&quick(&database, free_port())).await;
    let token = node.client.register("johndoe").await;
    let channel = node.client.post("/api/channels", Some(&token), &json!({"name": "general"})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = node.client.base.clone();
    let mut client = Process::spawn(CLIENT, &[&base, "johndoe", "secretpass"], &[]);
    let ready: Value = serde_json::from_str(&client.line_with("\"type\":\"ready\"").await).unwrap();
    assert_eq!(ready["data"]["channels"][0]["id"], channel.as_str());

    let frame = json!({"type": "message", "data": {"channel_id": channel, "content": "typed", "nonce": "n-1"}});
    writeln!(client.stdin(), "{frame}").unwrap();
    let ack: Value = serde_json::from_str(&client.line_with("\"type\":\"ack\"").await).unwrap();
    assert_eq!(ack["data"]["nonce"], "n-1");
    let history = node.client.get(&format!("/api/chat/channels/{channel}/messages"), Some(&token)).await;
    assert_eq!(history.assert_status(200)["items"][0]["content"], "typed");
}
