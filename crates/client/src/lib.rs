//! A typed async client for the chat server (docs/api.md): REST calls that take and return
//! the server's own wire types ([`wire`], re-exported here), and a WebSocket ([`Socket`])
//! that reconnects with back-off and resumes each channel from the last seq it delivered, so
//! a consumer sees every event once, in order, across disconnects.
//!
//! Below the typed layer are the pieces it is built from, public for tools that need the
//! wire itself: [`RawSocket`] (JSON frames in and out, nothing interpreted: the black-box
//! tests, which assert on the wire format), [`connect`] (opening a socket from a chosen local
//! address, loopback only, with a chosen read buffer) and [`frame`] (reading frames without
//! allocating; `chat-bench` follows 100,000+ frames a second with it).
//!
//! It depends on `wire` and `domain` alone of the server's crates, so a bot or tool built on
//! it pulls in no web framework or database.
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

pub mod connect;
pub mod frame;
mod raw;
mod socket;

use domain::ChannelId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_tungstenite::tungstenite;
pub use wire;
use wire::{
    ChannelDto, ErrorBody, LoginRequest, MessageDto, MyChannel, Page, PostMessageRequest, TokenResponse, UserDto,
};

pub use raw::RawSocket;
pub use socket::{Event, Socket};

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error body (`{detail, code}`).
    #[error("{status} {}: {}", body.code, body.detail)]
    Api { status: u16, body: ErrorBody },
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("WebSocket: {0}")]
    WebSocket(#[from] Box<tungstenite::Error>),
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The token was refused or revoked (HTTP 401, or the socket closed with 4001): signing
    /// in again is the only way on, so the socket does not retry.
    #[error("the token is no longer accepted")]
    Unauthorized,
    /// The WebSocket could not be opened: the name did not resolve, no local port, nothing
    /// listening.
    #[error("{context}")]
    Connect {
        context: String,
        #[source]
        source: Option<std::io::Error>,
    },
    /// The connection was to stay on this machine and the host is elsewhere.
    #[error("{0} does not resolve to a loopback address; refusing to connect")]
    NotLoopback(String),
    /// The server answered the WebSocket handshake with this HTTP status instead of
    /// upgrading (401: no valid token; 403: a username that is not the token's).
    #[error("the WebSocket handshake was refused with HTTP {0}")]
    Refused(u16),
    /// The connection ended (with this close code, when the server sent one) before what
    /// was awaited arrived.
    #[error("the connection closed (code {0:?})")]
    Closed(Option<u16>),
}

impl Error {
    pub(crate) fn connect(context: impl Into<String>, source: Option<std::io::Error>) -> Self {
        Self::Connect { context: context.into(), source }
    }
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

    /// Logs in with a password; the answer's `access_token` is the token to use.
    pub async fn login(&self, username: &str, password: &str) -> Result<TokenResponse, Error> {
        let body = LoginRequest { username: username.to_owned(), password: password.to_owned() };
        self.call(reqwest::Method::POST, "/api/auth/login", Some(&body)).await
    }

    /// The caller's account.
    pub async fn me(&self) -> Result<UserDto, Error> {
        self.get("/api/users/me").await
    }

    /// Posts `content` to a channel and returns the message as stored (with its seq).
    pub async fn send(&self, channel: impl Into<ChannelId>, content: &str) -> Result<MessageDto, Error> {
        self.post_message(&PostMessageRequest {
            content: content.to_owned(),
            channel_id: channel.into().as_uuid(),
            parent_id: None,
            attachment_ids: Vec::new(),
            nonce: None,
        })
        .await
    }

    /// Posts a message with every option (a thread reply, attachments, a nonce).
    pub async fn post_message(&self, request: &PostMessageRequest) -> Result<MessageDto, Error> {
        self.call(reqwest::Method::POST, "/api/chat/messages", Some(request)).await
    }

    /// The newest `limit` messages of a channel, newest first.
    pub async fn history(&self, channel: impl Into<ChannelId>, limit: u8) -> Result<Vec<MessageDto>, Error> {
        let path = format!("/api/chat/channels/{}/messages?limit={}", channel.into(), limit.clamp(1, 200));
        Ok(self.get::<Page<MessageDto>>(&path).await?.items)
    }

    /// Joins a public channel.
    pub async fn join(&self, channel: impl Into<ChannelId>) -> Result<(), Error> {
        let path = format!("/api/channels/{}/join", channel.into());
        self.call::<serde_json::Value>(reqwest::Method::POST, &path, None::<&()>).await.map(drop)
    }

    /// The caller's channels and DMs (the first 200), with their read state.
    pub async fn my_channels(&self) -> Result<Vec<MyChannel>, Error> {
        Ok(self.get::<Page<MyChannel>>("/api/channels/me?limit=200").await?.items)
    }

    /// Finds a channel by id or by name among the caller's channels and the public ones.
    pub async fn find_channel(&self, id_or_name: &str) -> Result<ChannelId, Error> {
        if let Ok(id) = id_or_name.parse::<ChannelId>() {
            return Ok(id);
        }
        let named = |channel: &ChannelDto| channel.name.eq_ignore_ascii_case(id_or_name);
        if let Some(mine) = self.my_channels().await?.into_iter().find(|c| named(&c.channel)) {
            return Ok(mine.channel.id.into());
        }
        let public: Page<ChannelDto> = self.get("/api/channels?limit=200").await?;
        if let Some(channel) = public.items.into_iter().find(named) {
            return Ok(channel.id.into());
        }
        let detail = format!("no channel named {id_or_name}");
        Err(Error::Api {
            status: 404,
            body: ErrorBody { detail, code: "not_found".into(), errors: None, request_id: None },
        })
    }

    /// The newest `backlog` messages of a channel, oldest first, and a socket that carries on
    /// right after the newest of them (nothing missed in between, nothing twice).
    pub async fn follow(&self, channel: ChannelId, backlog: u8) -> Result<(Vec<MessageDto>, Socket), Error> {
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

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.call(reqwest::Method::GET, path, None::<&()>).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, Error> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if status.as_u16() == 401 {
            return Err(Error::Unauthorized);
        }
        if !status.is_success() {
            let body = serde_json::from_str(&text).unwrap_or_else(|_| ErrorBody {
                detail: text,
                code: "unknown".into(),
                errors: None,
                request_id: None,
            });
            return Err(Error::Api { status: status.as_u16(), body });
        }
        serde_json::from_str(&text).map_err(|e| Error::Decode(format!("{e}: {text}")))
    }
}
