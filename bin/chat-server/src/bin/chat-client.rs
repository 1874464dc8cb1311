//! A small real-time client: logs in, connects, prints every frame it receives as one JSON
//! line, sends every line typed on standard input as a frame, and on a dropped connection
//! reconnects and resumes from the last seq of each channel.
//!
//! It is built with the server (`cargo build` builds both binaries of this package), so
//! trying the WebSocket needs no extra tool:
//!
//! ```sh
//! cargo run --release --bin chat-client -- http://127.0.0.1:8000 johndoe secretpass
//! ```

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(username), Some(password)) = (args.next(), args.next(), args.next()) else {
        bail!("usage: chat-client <http url> <username> <password>");
    };
    let login: Value = reqwest::Client::new()
        .post(format!("{url}/api/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await?
        .error_for_status()
        .context("login failed")?
        .json()
        .await?;
    let token = login["access_token"].as_str().context("no access_token")?.to_owned();
    let ws_url = format!("{}/api/ws?token={token}", url.replacen("http", "ws", 1));

    // Standard input is read on a plain thread (a blocking read), one frame per line.
    let (lines_tx, mut lines) = mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if !line.trim().is_empty() && lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });

    // Per channel, the last seq seen: what `resume` asks the server to continue from.
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    loop {
        match run(&ws_url, &mut last_seq, &mut lines).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                eprintln!("connection ended: {error}; resuming in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn run(
    ws_url: &str,
    last_seq: &mut HashMap<String, i64>,
    lines: &mut mpsc::Receiver<String>,
) -> anyhow::Result<()> {
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await?;
    if !last_seq.is_empty() {
        let resume = json!({"type": "resume", "data": {"channels": last_seq}});
        socket.send(Message::Text(resume.to_string().into())).await?;
    }
    let mut input_open = true;
    loop {
        tokio::select! {
            line = lines.recv(), if input_open => match line {
                Some(line) => socket.send(Message::Text(line.into())).await?,
                // Standard input ended: keep printing what arrives.
                None => input_open = false,
            },
            frame = socket.next() => {
                let Some(frame) = frame else { return Ok(()) };
                match frame? {
                    Message::Text(text) => {
                        let event: Value = serde_json::from_str(&text)?;
                        println!("{event}");
                        remember(&event, last_seq);
                    }
                    Message::Close(frame) => bail!("closed by the server: {frame:?}"),
                    _ => {}
                }
            }
        }
    }
}

/// Notes the newest seq of each channel an event shows.
fn remember(event: &Value, last_seq: &mut HashMap<String, i64>) {
    if event["type"] == "ready" {
        for channel in event["data"]["channels"].as_array().into_iter().flatten() {
            if let (Some(id), Some(seq)) = (channel["id"].as_str(), channel["last_seq"].as_i64()) {
                last_seq.entry(id.to_owned()).or_insert(seq);
            }
        }
    } else if let (Some(channel), Some(seq)) = (event["data"]["channel_id"].as_str(), event["data"]["seq"].as_i64()) {
        last_seq.insert(channel.to_owned(), seq);
    }
}
