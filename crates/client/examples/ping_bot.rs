//! A bot that answers `!ping` with `pong` in every channel it is in.
//!
//! `CHAT_URL=http://127.0.0.1:8000 CHAT_TOKEN=chat_pat_... cargo run -p chat-client --example ping_bot`

use chat_client::{Client, Error, Event};

/// Answers `!ping` until the token is refused.
pub async fn run(client: Client) -> Result<(), Error> {
    let me = client.me().await?;
    let mut socket = client.socket();
    loop {
        if let Event::Message(message) = socket.next_event().await?
            && message.user_id != me.id
            && message.content.trim() == "!ping"
        {
            client.send(message.channel_id, "pong").await?;
        }
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::var("CHAT_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    let token = std::env::var("CHAT_TOKEN").map_err(|_| Error::Unauthorized)?;
    run(Client::new(&url).with_token(&token)).await
}
