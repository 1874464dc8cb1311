//! The web client (docs/api.md section 14) in a real headless Chromium: two people chat live,
//! one of them rides out a server restart and an outage without losing or doubling a
//! message, an image upload shows its preview, threads, reactions and search work.
//!
//! With `CHAT_WEB_SCREENSHOTS=1` the second test also writes the screenshots shown in the
//! README to `docs/web/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;

use blackbox_tests::TestApp;
use blackbox_tests::browser::{Browser, ENTER, ESCAPE, RELEASE, SHIFT, find_chromium};
use blackbox_tests::proxy::Proxy;
use serde_json::{Value, json};

/// Each test runs up to three Chromiums; one test at a time keeps a small CI machine from
/// starving them (the waits are 30 s each).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Chromium is needed; where it cannot be installed the tests say so in one line and pass.
fn chromium_here() -> bool {
    match find_chromium() {
        Ok(_) => true,
        Err(why) => {
            // Written to the real stderr, past the test harness's capture, so it is seen;
            // once for the whole suite.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(std::io::stderr(), "skipping the web client tests: {why}");
            });
            false
        }
    }
}

async fn sign_up(browser: &Browser, base: &str, username: &str) {
    browser.goto(&format!("{base}/")).await;
    browser.click("#tab-register").await;
    browser.type_into("#auth-username", username).await;
    browser.type_into("#auth-email", &format!("{username}@example.com")).await;
    browser.type_into("#auth-display", &capitalised(username)).await;
    browser.type_into("#auth-password", "secretpass").await;
    browser.click("#auth-submit").await;
    browser.wait_for("the chat view", "return !document.querySelector('#chat').hidden", json!([])).await;
}

fn capitalised(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

async fn create_channel(browser: &Browser, name: &str, description: &str) {
    browser.click("#new-channel").await;
    browser.type_into("#new-channel-name", name).await;
    browser.type_into("#new-channel-description", description).await;
    browser.click("#create-channel button[type=submit]").await;
    wait_for_title(browser, name).await;
}

async fn join_channel(browser: &Browser, name: &str) {
    browser.click("#new-channel").await;
    browser.click(&format!(".join[data-name=\"{name}\"]")).await;
    wait_for_title(browser, name).await;
}

async fn wait_for_title(browser: &Browser, name: &str) {
    browser
        .wait_for(
            &format!("channel {name} to open"),
            "return document.querySelector('#channel-title').textContent.includes(arguments[0])",
            json!([name]),
        )
        .await;
}

async fn say(browser: &Browser, text: &str) {
    browser.type_into("#message-input", &format!("{text}{ENTER}")).await;
}

/// The texts of the open channel's messages, top to bottom.
async fn texts(browser: &Browser) -> Vec<String> {
    let value = browser
        .eval(
            "return [...document.querySelectorAll('#messages .message .message-body')].map(e => e.innerText)",
            json!([]),
        )
        .await;
    serde_json::from_value(value).unwrap()
}

async fn wait_for_text(browser: &Browser, text: &str) {
    browser
        .wait_for(
            &format!("the message {text:?}"),
            "return [...document.querySelectorAll('#messages .message-body')].some(e => e.innerText === arguments[0])",
            json!([text]),
        )
        .await;
}

/// Clicks through the DOM: for controls that only show on hover (message actions).
async fn js_click(browser: &Browser, css: &str) {
    browser.find(css).await;
    browser.eval("document.querySelector(arguments[0]).click()", json!([css])).await;
}

async fn channel_id(app: &TestApp, token: &str, name: &str) -> String {
    let page = app.client.get("/api/channels?limit=200", Some(token)).await;
    let items = page.assert_status(200)["items"].as_array().unwrap().clone();
    items.iter().find(|c| c["name"] == name).unwrap()["id"].as_str().unwrap().to_owned()
}

async fn post(app: &TestApp, token: &str, channel: &str, content: &str) -> Value {
    let reply =
        app.client.post("/api/chat/messages", Some(token), &json!({"channel_id": channel, "content": content})).await;
    reply.assert_status(201).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_live_and_a_restart_and_an_outage_lose_and_double_nothing() {
    if !chromium_here() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut app = TestApp::spawn().await;
    // Alice reaches the server through a proxy the test can cut: her outage is then certain
    // to span the messages posted below, whatever her reconnect back-off does.
    let proxy = Proxy::start(format!("127.0.0.1:{}", app.port).parse().unwrap()).await;
    let alice_base = format!("http://127.0.0.1:{}", proxy.port);
    let (alice, bob) = tokio::join!(Browser::start(), Browser::start());
    sign_up(&alice, &alice_base, "alice").await;
    sign_up(&bob, &app.base, "bob").await;

    create_channel(&alice, "general", "Everything").await;
    join_channel(&bob, "general").await;

    // Typing shows on the other side before the message is sent.
    alice.type_into("#message-input", "hello bob").await;
    bob.wait_for(
        "alice's typing indicator",
        "return document.querySelector('#typing').textContent.includes('Alice is typing')",
        json!([]),
    )
    .await;
    alice.type_into("#message-input", ENTER).await;
    wait_for_text(&bob, "hello bob").await;
    say(&bob, "hi alice").await;
    wait_for_text(&alice, "hi alice").await;
    // Shift+Enter is a new line, Enter sends.
    alice.type_into("#message-input", &format!("line one{SHIFT}{ENTER}{RELEASE}line two{ENTER}")).await;
    wait_for_text(&bob, "line one\nline two").await;

    // Alice goes offline; the server restarts on the same port and database meanwhile.
    proxy.cut();
    alice
        .wait_for("alice's reconnecting banner", "return !document.querySelector('#connection').hidden", json!([]))
        .await;
    app.restart().await;
    let bob_token =
        app.client.post("/api/auth/login", None, &json!({"username": "bob", "password": "secretpass"})).await;
    let bob_token = bob_token.assert_status(200)["access_token"].as_str().unwrap().to_owned();
    let general = channel_id(&app, &bob_token, "general").await;
    for n in 1..=3 {
        post(&app, &bob_token, &general, &format!("missed {n}")).await;
    }
    assert!(!texts(&alice).await.contains(&"missed 1".to_owned()), "alice is offline");
    proxy.restore();

    wait_for_text(&alice, "missed 3").await;
    alice.wait_for("the banner to go", "return document.querySelector('#connection').hidden", json!([])).await;
    let expected = ["hello bob", "hi alice", "line one\nline two", "missed 1", "missed 2", "missed 3"];
    assert_eq!(texts(&alice).await, expected, "every message once, in order, after the reconnect");
    let seqs: Vec<i64> = serde_json::from_value(
        alice
            .eval("return [...document.querySelectorAll('#messages .message')].map(e => +e.dataset.seq)", json!([]))
            .await,
    )
    .unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs strictly increase: {seqs:?}");

    // Bob, who was connected straight to the restarted server, has them too, and live
    // delivery goes on both ways.
    wait_for_text(&bob, "missed 3").await;
    assert_eq!(texts(&bob).await, expected);
    say(&bob, "welcome back").await;
    wait_for_text(&alice, "welcome back").await;
    assert_eq!(texts(&alice).await.iter().filter(|t| *t == "welcome back").count(), 1);

    // A DM: Bob is connected, so Alice sees him online.
    alice.click("#new-dm").await;
    alice.type_into("#dm-username", &format!("bob{ENTER}")).await;
    wait_for_title(&alice, "bob").await;
    alice
        .wait_for("bob online", "return document.querySelector('#channel-meta').textContent === 'Online'", json!([]))
        .await;
    alice.find("#dm-list .presence.on").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_scrolls_back_a_page_at_a_time_and_errors_are_shown_in_words() {
    if !chromium_here() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let app = TestApp::spawn().await;
    let bob = app.user("bob").await;
    let channel = app.client.post("/api/channels", Some(&bob), &json!({"name": "archive"})).await;
    let channel = channel.assert_status(201)["id"].as_str().unwrap().to_owned();
    for n in 1..=70 {
        post(&app, &bob, &channel, &format!("old news {n}")).await;
    }
    let alice = Browser::start().await;

    // The API's errors reach the person in words: a wrong password, a taken channel name.
    alice.goto(&format!("{}/", app.base)).await;
    alice.type_into("#auth-username", "bob").await;
    alice.type_into("#auth-password", &format!("not-his-password{ENTER}")).await;
    alice
        .wait_for(
            "the sign-in error",
            "return document.querySelector('#auth-error:not([hidden])')?.textContent",
            json!([]),
        )
        .await;
    sign_up(&alice, &app.base, "alice").await;
    alice.click("#new-channel").await;
    alice.type_into("#new-channel-name", &format!("archive{ENTER}")).await;
    let error = alice
        .wait_for(
            "the taken-name error",
            "return document.querySelector('#channel-dialog .error:not([hidden])')?.textContent",
            json!([]),
        )
        .await;
    assert!(!error.as_str().unwrap().trim().is_empty());
    alice.click("#channel-dialog .dialog-cancel").await;

    join_channel(&alice, "archive").await;
    wait_for_text(&alice, "old news 70").await;
    // The newest page (50) first; scrolling to the top fetches the rest with ?before=.
    assert_eq!(texts(&alice).await.len(), 50);
    alice.eval("const box = document.querySelector('#messages'); box.scrollTop = 0; box.dispatchEvent(new Event('scroll'))", json!([])).await;
    wait_for_text(&alice, "old news 1").await;
    alice.find("#messages .start").await;
    let expected: Vec<String> = (1..=70).map(|n| format!("old news {n}")).collect();
    assert_eq!(texts(&alice).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_shows_its_preview_threads_reactions_and_search_work() {
    if !chromium_here() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let app = TestApp::spawn().await;
    let shots = std::env::var_os("CHAT_WEB_SCREENSHOTS").is_some();
    let shot = async |browser: &Browser, name: &str| {
        if shots {
            let dir = blackbox_tests::workspace_root().join("docs/web");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), browser.screenshot().await).unwrap();
        }
    };
    let alice = Browser::start().await;
    alice.goto(&format!("{}/", app.base)).await;
    alice.find("#auth-username").await;
    alice.viewport(390, 844, true).await;
    shot(&alice, "sign-in-390").await;
    alice.viewport(1280, 800, false).await;

    sign_up(&alice, &app.base, "alice").await;
    create_channel(&alice, "general", "Company-wide announcements and chatter").await;
    let bob = app.user("bob").await;
    let general = channel_id(&app, &bob, "general").await;
    app.client.post_empty(&format!("/api/channels/{general}/join"), Some(&bob)).await.assert_status(200);
    let notes = post(&app, &bob, &general, "Morning! The release notes for 2.4 are up in the wiki.").await;
    wait_for_text(&alice, "Morning! The release notes for 2.4 are up in the wiki.").await;
    say(&alice, "Thanks, reading them now").await;
    post(&app, &bob, &general, "Who brought the kumquat pie to the kitchen? 🥧").await;

    // A reaction through the hover menu.
    let bob_message = format!("#messages .message[data-id=\"{}\"]", notes["id"].as_str().unwrap());
    js_click(&alice, &format!("{bob_message} .actions .react")).await;
    js_click(&alice, &format!("{bob_message} .picker button")).await;
    alice.find(&format!("{bob_message} .reaction.mine")).await;

    // An image: the sign-in page's screenshot, uploaded through the file input.
    alice.goto(&format!("{}/", app.base)).await;
    wait_for_title(&alice, "general").await;
    let image = std::env::temp_dir().join(format!("chat-web-{}.png", uuid::Uuid::new_v4().simple()));
    let picture = Browser::start().await;
    picture.viewport(640, 400, false).await;
    picture.goto(&format!("{}/", app.base)).await;
    picture.find("#auth-username").await;
    std::fs::write(&image, picture.screenshot().await).unwrap();
    drop(picture);
    alice.type_into("#file-input", image.to_str().unwrap()).await;
    alice.find("#pending .chip:not(.uploading)").await;
    say(&alice, "Here is what the sign-in page looks like").await;
    alice
        .wait_for(
            "the image preview",
            "const img = document.querySelector('#messages img.preview'); \
             return img && img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0",
            json!([]),
        )
        .await;
    let _ = std::fs::remove_file(&image);

    // A DM from Bob that mentions Alice shows up with badges.
    let dm = app.client.post_empty("/api/channels/dm/alice", Some(&bob)).await;
    let dm = dm.body["id"].as_str().unwrap().to_owned();
    post(&app, &bob, &dm, "@alice got a minute for the 2.4 review?").await;
    alice.find(&format!("#dm-list li[data-channel-id=\"{dm}\"] .badge.mention")).await;
    shot(&alice, "channel-1280").await;

    // A thread: the replies panel, a reply, Escape closes it.
    js_click(&alice, &format!("{bob_message} .actions .reply")).await;
    alice.find("#thread:not([hidden]) #thread-messages .message").await;
    alice.type_into("#thread-input", &format!("Left two comments on the API section{ENTER}")).await;
    alice
        .wait_for(
            "the reply in the thread",
            "return [...document.querySelectorAll('#thread-messages .message-body')].some(e => e.innerText.startsWith('Left two'))",
            json!([]),
        )
        .await;
    alice.find(&format!("{bob_message} .thread-link")).await;
    shot(&alice, "thread-1280").await;
    alice.type_into("#thread-input", ESCAPE).await;
    alice.wait_for("the thread to close", "return document.querySelector('#thread').hidden", json!([])).await;

    // Search finds Bob's message.
    alice.type_into("#search-input", &format!("kumquat{ENTER}")).await;
    alice
        .wait_for(
            "a search result",
            "return [...document.querySelectorAll('#results-list .result')].some(e => e.innerText.includes('kumquat pie'))",
            json!([]),
        )
        .await;
    shot(&alice, "search-1280").await;

    // The phone layout: one pane at a time.
    alice.type_into("#search-input", ESCAPE).await;
    alice.viewport(390, 844, true).await;
    shot(&alice, "channel-390").await;
    alice.click("#back").await;
    alice.find("#chat[data-pane=sidebar]").await;
    shot(&alice, "sidebar-390").await;

    // Editing and deleting one's own message, back in the channel.
    alice.click("#channel-list li.channel button").await;
    alice.find("#chat[data-pane=conversation]").await;
    let own = "#messages .message.own:not(.deleted)";
    js_click(&alice, &format!("{own} .actions .edit")).await;
    alice.type_into(".editor", &format!(" (updated){ENTER}")).await;
    wait_for_text(&alice, "Thanks, reading them now (updated)").await;
    alice.find(".message.own .edited").await;
    // The app asks before deleting; the test says yes in advance.
    alice.eval("window.confirm = () => true", json!([])).await;
    js_click(&alice, &format!("{own} .actions .delete")).await;
    wait_for_text(&alice, "This message was deleted.").await;

    // Kicked from a channel by its owner: it leaves her list at once, with a sentence saying
    // why (the socket's `member_removed`).
    let token = alice.eval("return localStorage.getItem('chat.token')", json!([])).await;
    let standup = app.create_channel(&bob, "standup").await;
    app.client.post_empty(&format!("/api/channels/{standup}/join"), token.as_str()).await.assert_status(200);
    alice.find(&format!("#channel-list li[data-channel-id=\"{standup}\"]")).await;
    app.client.delete(&format!("/api/channels/{standup}/members/alice"), Some(&bob)).await.assert_status(204);
    alice
        .wait_for(
            "the channel to leave the list after the kick",
            "return !document.querySelector(`#channel-list li[data-channel-id=\"${arguments[0]}\"]`) \
             && document.querySelector('#toasts').innerText.includes('removed from')",
            json!([standup]),
        )
        .await;

    // A revoked token sends the person back to sign in, with a sentence saying why: at once
    // on the open page (its socket is closed with 4001)...
    let notice = "const n = document.querySelector('#auth-notice'); \
                  return !n.hidden && n.textContent.includes(arguments[0]) && n.textContent.includes('sign in again')";
    app.client.post_empty("/api/auth/logout", token.as_str()).await.assert_status(204);
    alice.wait_for("the sign-in notice of the socket's 4001", notice, json!(["session has ended"])).await;
    // ...and on a page opened later with the revoked token still kept (its first request
    // is refused with 401).
    alice.eval("localStorage.setItem('chat.token', arguments[0])", json!([token])).await;
    alice.goto(&format!("{}/", app.base)).await;
    alice.wait_for("the sign-in notice of a refused request", notice, json!(["session has expired"])).await;
}
