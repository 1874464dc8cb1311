//! `chat`: the client library from a shell.
//!
//! ```text
//! chat login <username> <password>     prints `export CHAT_TOKEN=...`
//! chat send <channel> <text...>        posts (channel: id or name)
//! chat tail <channel>                  prints the last ten messages, then new ones live
//! ```
//! `CHAT_URL` (default `http://127.0.0.1:8000`) names the server, `CHAT_TOKEN` the token (an
//! access token or a `chat_pat_…` API token).

use chat_client::{Client, Error, Event};

fn usage() -> ! {
    eprintln!("usage: chat login <username> <password> | chat send <channel> <text...> | chat tail <channel>");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("CHAT_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    let client = Client::new(&url);
    let client = match std::env::var("CHAT_TOKEN") {
        Ok(token) => client.with_token(&token),
        Err(_) => client,
    };
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["login", username, password] => client.login(username, password).await.map(|token| {
            println!("export CHAT_TOKEN={}", token.access_token);
        }),
        ["send", channel, text @ ..] if !text.is_empty() => send(&client, channel, &text.join(" ")).await,
        ["tail", channel] => tail(&client, channel).await,
        _ => usage(),
    };
    if let Err(error) = result {
        eprintln!("chat: {error}");
        std::process::exit(1);
    }
}

async fn send(client: &Client, channel: &str, text: &str) -> Result<(), Error> {
    let channel = client.find_channel(channel).await?;
    let message = client.send(channel, text).await?;
    println!("sent #{}", message.seq);
    Ok(())
}

async fn tail(client: &Client, channel: &str) -> Result<(), Error> {
    let channel = client.find_channel(channel).await?;
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
