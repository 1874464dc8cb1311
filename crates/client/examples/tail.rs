//! Prints a channel's messages as they arrive, after its last ten.
//!
//! `CHAT_URL=http://127.0.0.1:8000 CHAT_TOKEN=... cargo run -p chat-client --example tail -- general`

use chat_client::{Client, Error, Event};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::var("CHAT_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    let token = std::env::var("CHAT_TOKEN").map_err(|_| Error::Unauthorized)?;
    let name = std::env::args().nth(1).unwrap_or_else(|| "general".into());
    let client = Client::new(&url).with_token(&token);
    let channel = client.find_channel(&name).await?;
    let (backlog, mut socket) = client.follow(channel, 10).await?;
    for message in backlog {
        println!("{}: {}", message.user.username, message.content);
    }
    loop {
        if let Event::Message(message) = socket.next_event().await?
            && message.channel_id == channel.as_uuid()
        {
            println!("{}: {}", message.user.username, message.content);
        }
    }
}
