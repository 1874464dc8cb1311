//! A typed async client for the chat server (docs/api.md): REST calls that return the
//! server's own domain types, and a WebSocket ([`Socket`]) that reconnects with back-off and
//! resumes each channel from the last seq it delivered, so a consumer sees every event once,
//! in order, across disconnects.
//!
//! It depends on `domain` alone of the server's crates: messages and events cross the wire
//! in `domain`'s serde shapes, so client and server share one definition of them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chat_client::Error> {
//! let client = chat_client::Client::new("http://127.0.0.1:8000").with_token("chat_pat_...");
//! let mut socket = client.socket();
//! loop {
//!     if let chat_client::Event::Message(message) = socket.next_event().await? {
//!         println!("{}: {}", message.user.username, message.content);
//!     }
//! }
//! # }
//! ```

mod socket;

use domain::{ChannelId, Message};
use serde::Deserialize;
use serde_json::{Value, json};

pub use socket::{Event, Socket};

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error body (`{detail, code}`).
    #[error("{status} {code}: {detail}")]
    Api { status: u16, code: String, detail: String },
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("WebSocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The token was refused or revoked (HTTP 401, or the socket closed with 4001): signing
    /// in again is the only way on, so the socket does not retry.
    #[error("the token is no longer accepted")]
    Unauthorized,
}

/// An account as the server shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub id: domain::UserId,
    pub username: String,
    pub display_name: String,
    #[serde(default)]
    pub is_bot: bool,
}

/// A channel as listings show it.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelInfo {
    pub id: ChannelId,
    pub name: String,
}

#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
}

/// A handle on one server, with or without a token. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `base` is the server's root URL, such as `http://127.0.0.1:8000`.
    pub fn new(base: &str) -> Self {
        Self { http: reqwest::Client::new(), base: base.trim_end_matches('/').to_owned(), token: None }
    }

    /// Uses `token` (an access token or a `chat_pat_…` API token) from now on.
    #[must_use]
    pub fn with_token(self, token: &str) -> Self {
        Self { token: Some(token.to_owned()), ..self }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Logs in with a password and returns the access token.
    pub async fn login(&self, username: &str, password: &str) -> Result<String, Error> {
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
        }
        let body = json!({"username": username, "password": password});
        let token: Token = self.call(reqwest::Method::POST, "/api/auth/login", Some(body)).await?;
        Ok(token.access_token)
    }

    /// The caller's account.
    pub async fn me(&self) -> Result<Account, Error> {
        self.call(reqwest::Method::GET, "/api/users/me", None).await
    }

    /// Posts `content` to a channel and returns the message as stored (with its seq).
    pub async fn send(&self, channel: ChannelId, content: &str) -> Result<Message, Error> {
        let body = json!({"channel_id": channel, "content": content});
        self.call(reqwest::Method::POST, "/api/chat/messages", Some(body)).await
    }

    /// The newest `limit` messages of a channel, newest first.
    pub async fn history(&self, channel: ChannelId, limit: u8) -> Result<Vec<Message>, Error> {
        let path = format!("/api/chat/channels/{channel}/messages?limit={}", limit.clamp(1, 200));
        Ok(self.call::<Page<Message>>(reqwest::Method::GET, &path, None).await?.items)
    }

    /// Joins a public channel.
    pub async fn join(&self, channel: ChannelId) -> Result<(), Error> {
        self.call::<Value>(reqwest::Method::POST, &format!("/api/channels/{channel}/join"), None).await.map(drop)
    }

    /// Finds a channel by id or by name among the caller's channels and the public ones.
    pub async fn find_channel(&self, id_or_name: &str) -> Result<ChannelId, Error> {
        if let Ok(id) = id_or_name.parse::<ChannelId>() {
            return Ok(id);
        }
        for path in ["/api/channels/me?limit=200", "/api/channels?limit=200"] {
            let page: Page<ChannelInfo> = self.call(reqwest::Method::GET, path, None).await?;
            if let Some(channel) = page.items.into_iter().find(|c| c.name.eq_ignore_ascii_case(id_or_name)) {
                return Ok(channel.id);
            }
        }
        Err(Error::Api { status: 404, code: "not_found".into(), detail: format!("no channel named {id_or_name}") })
    }

    /// The newest `backlog` messages of a channel, oldest first, and a socket that carries on
    /// right after the newest of them (nothing missed in between, nothing twice).
    pub async fn follow(&self, channel: ChannelId, backlog: u8) -> Result<(Vec<Message>, Socket), Error> {
        let mut socket = self.socket();
        let mut history = self.history(channel, backlog).await?;
        if let Some(newest) = history.first() {
            socket.resume_from(channel, newest.seq);
        }
        history.reverse();
        Ok((history, socket))
    }

    /// A socket on this server with this client's token; it connects on first use.
    pub fn socket(&self) -> Socket {
        let ws_base = self.base.replacen("http", "ws", 1);
        Socket::new(format!("{ws_base}/api/ws"), self.token.clone().unwrap_or_default())
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, Error> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if status.as_u16() == 401 {
            return Err(Error::Unauthorized);
        }
        if !status.is_success() {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Err(Error::Api {
                status: status.as_u16(),
                code: body["code"].as_str().unwrap_or("unknown").to_owned(),
                detail: body["detail"].as_str().unwrap_or(&text).to_owned(),
            });
        }
        serde_json::from_str(&text).map_err(|e| Error::Decode(format!("{e}: {text}")))
    }
}
