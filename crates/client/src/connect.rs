//! Opening a WebSocket to the server, with the knobs a load generator needs: the local
//! address to connect from, a refusal to leave this machine, and the size of the read buffer.
//! [`Socket`](crate::Socket) and [`RawSocket`](crate::RawSocket) open theirs here with the
//! defaults; `chat-bench` opens tens of thousands with its own.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chat_client::Error> {
//! use chat_client::connect::{ConnectOptions, IDLE_READ_BUFFER, connect};
//! let url = "ws://127.0.0.1:8000/api/ws?token=...".parse().unwrap();
//! let options = ConnectOptions {
//!     source: Some("127.0.0.2".parse().unwrap()),
//!     read_buffer: Some(IDLE_READ_BUFFER),
//!     loopback_only: true,
//! };
//! let ws = connect(&url, options).await?;
//! # Ok(()) }
//! ```

use std::net::{IpAddr, SocketAddr};

use reqwest::Url;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::Error;

/// An open WebSocket over plain TCP (the client speaks `ws://`; put TLS in front of the
/// server, not in here).
pub type Ws = WebSocketStream<TcpStream>;

/// Read buffer for connections that receive a steady stream of small frames. tungstenite
/// zero-fills this much before every read, so bigger costs CPU on every frame; frames larger
/// than the buffer still arrive whole (it grows to the frame's length).
pub const ACTIVE_READ_BUFFER: usize = 4 * 1024;
/// Read buffer for idle connections: tungstenite allocates it eagerly (128 KiB by default),
/// which would dominate the client's memory with 10,000 connections.
pub const IDLE_READ_BUFFER: usize = 4 * 1024;

/// How [`connect`] opens a connection. The default connects from any local address to
/// wherever the URL points, with tungstenite's own read buffer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions {
    /// Binds the local end to this address, so that many connections can use more than one
    /// address's ephemeral ports. Ignored when the server's address is of the other family.
    pub source: Option<IpAddr>,
    /// tungstenite's read buffer in bytes ([`ACTIVE_READ_BUFFER`], [`IDLE_READ_BUFFER`]);
    /// `None` keeps its default (128 KiB).
    pub read_buffer: Option<usize>,
    /// Refuses every address that is not loopback ([`is_loopback`]): a load generator's
    /// promise that it loads only this machine, kept after name resolution.
    pub loopback_only: bool,
}

/// Opens a WebSocket to `url` (`ws://host:port/api/ws?token=...`). A handshake the server
/// answers with an HTTP status is [`Error::Refused`] with that status (401: the token).
pub async fn connect(url: &Url, options: ConnectOptions) -> Result<Ws, Error> {
    let host = url.host_str().ok_or_else(|| Error::connect(format!("{url} has no host"), None))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::connect(format!("cannot resolve {host}"), Some(e)))?
        .collect();
    let allowed = |address: &SocketAddr| !options.loopback_only || is_loopback(address.ip());
    // Prefer an address of the source's family.
    let address = addresses
        .iter()
        .copied()
        .filter(allowed)
        .find(|a| options.source.is_none_or(|s| s.is_ipv4() == a.is_ipv4()))
        .or_else(|| addresses.iter().copied().find(allowed));
    let Some(address) = address else {
        return Err(if options.loopback_only {
            Error::NotLoopback(host.to_owned())
        } else {
            Error::connect(format!("{host} resolves to no address"), None)
        });
    };
    let socket = if address.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
        .map_err(|e| Error::connect("cannot create a socket (too many open files? raise ulimit -n)", Some(e)))?;
    if let Some(source) = options.source.filter(|s| s.is_ipv4() == address.is_ipv4()) {
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| Error::connect(format!("cannot bind a local port on {source}"), Some(e)))?;
    }
    socket.set_nodelay(true).map_err(|e| Error::connect("cannot set TCP_NODELAY", Some(e)))?;
    let stream =
        socket.connect(address).await.map_err(|e| Error::connect(format!("cannot connect to {address}"), Some(e)))?;
    let mut config = WebSocketConfig::default()
        // Clients send little; write each frame at once.
        .write_buffer_size(0);
    if let Some(read_buffer) = options.read_buffer {
        config = config.read_buffer_size(read_buffer);
    }
    match tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config)).await {
        Ok((ws, _response)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(Error::Refused(response.status().as_u16())),
        Err(error) => Err(Error::WebSocket(Box::new(error))),
    }
}

/// 127.0.0.0/8, `::1`, and IPv4-mapped loopback (`::ffff:127.0.0.1`).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn loopback_is_127_8_and_the_one_ipv6_address() {
        for ip in ["127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "0.0.0.0", "128.0.0.1", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn loopback_only_refuses_other_hosts_before_connecting() {
        let options = ConnectOptions { loopback_only: true, ..ConnectOptions::default() };
        let url = "ws://10.0.0.1:9/api/ws".parse().unwrap();
        assert!(matches!(connect(&url, options).await, Err(Error::NotLoopback(host)) if host == "10.0.0.1"));
    }

    /// The server sees the chosen source address, and a refused handshake is its status.
    #[tokio::test]
    async fn connects_from_the_source_address_and_reports_refusals() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (stream, peer) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            drop(ws.next().await);
            let (mut refused, _) = listener.accept().await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut refused, b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            peer.ip()
        });
        let url: Url = format!("ws://127.0.0.1:{port}/api/ws").parse().unwrap();
        let source = "127.0.0.2".parse().unwrap();
        let options = ConnectOptions { source: Some(source), read_buffer: Some(IDLE_READ_BUFFER), loopback_only: true };
        drop(connect(&url, options).await.unwrap());
        assert!(matches!(connect(&url, ConnectOptions::default()).await, Err(Error::Refused(403))));
        assert_eq!(server.await.unwrap(), source);
    }
}
