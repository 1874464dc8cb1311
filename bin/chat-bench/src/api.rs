//! The chat server's REST API, as far as chat-bench uses it.
//!
//! Setup calls (register, create, join) retry on 429 after `Retry-After` and fail on any
//! other error; the calls made under load return a [`Reply`] so that the caller counts
//! throttling and errors instead of stopping.
//!
//! Bodies are the server's own types (`chat_client::wire`), except on the posting path,
//! which runs for every message under load: it writes a borrowed body and reads only the
//! `seq` of the answer, and a test holds both to the server's types.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use chat_client::wire::{ChannelDto, CreateChannelRequest, LoginRequest, RegisterRequest, TokenResponse};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::target::Target;

/// How long to wait after a 429 that carries no usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    target: Arc<Target>,
    messages_url: Url,
    me_url: Url,
    /// 429 answers seen by setup calls.
    throttled: Arc<AtomicU64>,
}

/// The answer to a request made under load.
#[derive(Debug)]
pub enum Reply {
    Ok(bytes::Bytes),
    /// 429: wait this long before the next request.
    Throttled(Duration),
    Failed(String),
}

/// `wire::PostMessageRequest`, borrowed.
#[derive(Serialize)]
struct NewMessage<'a> {
    content: &'a str,
    channel_id: &'a str,
}

/// The one field of `wire::MessageDto` the posting path reads.
#[derive(Deserialize)]
struct Posted {
    #[serde(default)]
    seq: Option<u64>,
}

impl Api {
    pub fn new(target: Target) -> Result<Self> {
        let http = reqwest::Client::builder()
            // Never route loopback traffic through a proxy from the environment.
            .no_proxy()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            messages_url: target.http("api/chat/messages")?,
            me_url: target.http("api/users/me")?,
            target: Arc::new(target),
            throttled: Arc::default(),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn setup_throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// `GET /api/chat/channels/{id}/messages?limit=`.
    pub fn page_url(&self, channel_id: &str, limit: u32) -> Result<Url> {
        let mut url = self.target.http(&format!("api/chat/channels/{channel_id}/messages"))?;
        url.query_pairs_mut().append_pair("limit", &limit.to_string());
        Ok(url)
    }

    pub fn me_url(&self) -> &Url {
        &self.me_url
    }

    /// Registers a user and returns its access token.
    pub async fn register(&self, username: &str, password: &str) -> Result<String> {
        let url = self.target.http("api/auth/register")?;
        let body = RegisterRequest {
            username: username.to_owned(),
            email: format!("{username}@example.com"),
            password: password.to_owned(),
            display_name: None,
        };
        let bytes = self.setup_call("POST /api/auth/register", || self.http.post(url.clone()).json(&body)).await?;
        let token: TokenResponse =
            serde_json::from_slice(&bytes).context("POST /api/auth/register: no access_token in the answer")?;
        Ok(token.access_token)
    }

    /// Creates a public channel and returns its id.
    pub async fn create_channel(&self, token: &str, name: &str) -> Result<String> {
        let url = self.target.http("api/channels")?;
        let body = CreateChannelRequest {
            name: name.to_owned(),
            description: Some("created by chat-bench".to_owned()),
            is_private: false,
        };
        let bytes = self
            .setup_call("POST /api/channels", || self.http.post(url.clone()).bearer_auth(token).json(&body))
            .await?;
        let channel: ChannelDto =
            serde_json::from_slice(&bytes).context("POST /api/channels: not a channel in the answer")?;
        Ok(channel.id.to_string())
    }

    pub async fn join(&self, token: &str, channel_id: &str) -> Result<()> {
        let url = self.target.http(&format!("api/channels/{channel_id}/join"))?;
        self.setup_call("POST /api/channels/{id}/join", || self.http.post(url.clone()).bearer_auth(token)).await?;
        Ok(())
    }

    /// `POST /api/chat/messages`, retried on 429: for seeding history during setup.
    pub async fn post_for_setup(&self, token: &str, channel_id: &str, content: &str) -> Result<()> {
        let body = NewMessage { content, channel_id };
        self.setup_call("POST /api/chat/messages", || {
            self.http.post(self.messages_url.clone()).bearer_auth(token).json(&body)
        })
        .await?;
        Ok(())
    }

    /// `POST /api/chat/messages` under load.
    pub async fn post_message(&self, token: &str, channel_id: &str, content: &str) -> Reply {
        let body = NewMessage { content, channel_id };
        let request = self.http.post(self.messages_url.clone()).bearer_auth(token).json(&body);
        load_call(request).await
    }

    /// `POST /api/auth/login` under load (the abuse scenario's password guesser).
    pub async fn login(&self, username: &str, password: &str) -> Reply {
        let url = match self.target.http("api/auth/login") {
            Ok(url) => url,
            Err(error) => return Reply::Failed(error.to_string()),
        };
        load_call(
            self.http.post(url).json(&LoginRequest { username: username.to_owned(), password: password.to_owned() }),
        )
        .await
    }

    /// An authenticated GET under load.
    pub async fn get(&self, token: &str, url: &Url) -> Reply {
        load_call(self.http.get(url.clone()).bearer_auth(token)).await
    }

    /// Sends a setup request, waiting out 429s; any other non-2xx status is an error.
    async fn setup_call(&self, what: &str, request: impl Fn() -> RequestBuilder) -> Result<bytes::Bytes> {
        loop {
            let response = request()
                .send()
                .await
                .map_err(|e| describe_transport_error(e, self.target.as_str()))
                .with_context(|| what.to_owned())?;
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(retry_after(response.headers())).await;
                continue;
            }
            let body = response.bytes().await.with_context(|| format!("{what}: reading the answer"))?;
            if !status.is_success() {
                bail!("{what}: HTTP {status}: {}", snippet(&body));
            }
            return Ok(body);
        }
    }
}

async fn load_call(request: RequestBuilder) -> Reply {
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Reply::Failed(error.to_string()),
    };
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Reply::Throttled(retry_after(response.headers()));
    }
    match response.bytes().await {
        Ok(body) if status.is_success() => Reply::Ok(body),
        Ok(body) => Reply::Failed(format!("HTTP {status}: {}", snippet(&body))),
        Err(error) => Reply::Failed(error.to_string()),
    }
}

/// The `seq` in a posted message, when the server numbers messages.
pub fn posted_seq(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Posted>(body).ok()?.seq
}

/// `Retry-After` in seconds (the HTTP-date form is treated as one second), at most a minute.
pub fn retry_after(headers: &HeaderMap) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(DEFAULT_RETRY_AFTER, |s| Duration::from_secs_f64(s.min(60.0)).max(Duration::from_millis(10)))
}

fn describe_transport_error(error: reqwest::Error, base: &str) -> anyhow::Error {
    if error.is_connect() {
        anyhow::anyhow!(
            "cannot connect to the server at {base} ({error}); is it running? e.g. \
             RATE_LIMIT_WRITES_PER_SECOND=0 RATE_LIMIT_AUTH_PER_MINUTE=0 BCRYPT_COST=4 ./target/release/chat-server"
        )
    } else {
        anyhow::Error::new(error)
    }
}

/// The start of an error body, for messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut snippet: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        snippet.push('…');
    }
    snippet
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(retry_after).unwrap());
        headers
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_bounded() {
        assert_eq!(retry_after(&headers("2")), Duration::from_secs(2));
        assert_eq!(retry_after(&headers("0")), Duration::from_millis(10));
        assert_eq!(retry_after(&headers("3600")).as_secs(), 60);
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")), DEFAULT_RETRY_AFTER);
        assert_eq!(retry_after(&HeaderMap::new()), DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn the_seq_of_a_posted_message_is_read_if_present() {
        assert_eq!(posted_seq(br#"{"id":"x","seq":17,"user":{"id":"u"}}"#), Some(17));
        assert_eq!(posted_seq(br#"{"id":"x"}"#), None);
        assert_eq!(posted_seq(b"not json"), None);
    }

    #[test]
    fn the_borrowed_post_body_is_what_the_server_reads() {
        let channel_id = uuid::Uuid::now_v7();
        let body = serde_json::to_string(&NewMessage { content: "hi", channel_id: &channel_id.to_string() }).unwrap();
        let read: chat_client::wire::PostMessageRequest = serde_json::from_str(&body).unwrap();
        assert_eq!((read.content.as_str(), read.channel_id), ("hi", channel_id));
    }

    #[test]
    fn error_snippets_are_short() {
        assert_eq!(snippet(b"short"), "short");
        assert_eq!(snippet(&[b'a'; 400]).chars().count(), 301);
    }
}
