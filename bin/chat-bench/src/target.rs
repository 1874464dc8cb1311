//! The server under test: its base URL, checked to be on this machine.
//!
//! Architecture Invariant: chat-bench only ever sends traffic to loopback addresses
//! (127.0.0.0/8, `localhost`, `::1`). Every URL it is given (`--url`, `--database-url`) passes
//! through this module first, and WebSocket connections re-check the resolved address (they
//! are all opened with [`ws_options`], which sets the client's `loopback_only`).

use std::net::IpAddr;

use anyhow::{Context as _, Result, bail};
use chat_client::connect::{ConnectOptions, is_loopback};
use reqwest::Url;

/// The HTTP base URL of a chat server on this machine, ending in `/`.
#[derive(Clone, Debug)]
pub struct Target {
    base: Url,
}

impl Target {
    pub fn parse(raw: &str) -> Result<Self> {
        let mut base = Url::parse(raw).with_context(|| format!("--url {raw:?} is not a URL"))?;
        match base.scheme() {
            "http" => {}
            "https" => bail!(
                "--url {raw}: https is not supported (chat-bench only targets a server on this machine; use http://)"
            ),
            other => bail!("--url {raw}: scheme {other:?} is not supported, use http://"),
        }
        let host = base.host_str().with_context(|| format!("--url {raw} has no host"))?;
        ensure_loopback_host(host).with_context(|| format!("refusing --url {raw}"))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);
        base.set_fragment(None);
        Ok(Self { base })
    }

    /// An API path such as `api/channels` (no leading slash) joined to the base URL.
    pub fn http(&self, path: &str) -> Result<Url> {
        self.base.join(path).with_context(|| format!("cannot join {path:?} to {}", self.base))
    }

    /// `ws://host:port/api/ws?token=...`.
    pub fn ws(&self, token: &str) -> Result<Url> {
        let mut url = self.http("api/ws")?;
        url.set_scheme("ws").map_err(|()| anyhow::anyhow!("cannot make a ws:// URL from {}", self.base))?;
        url.query_pairs_mut().append_pair("token", token);
        Ok(url)
    }

    pub fn as_str(&self) -> &str {
        self.base.as_str()
    }

    /// True for an `[::1]` style host: there is only one IPv6 loopback address, so extra
    /// 127.0.0.x source addresses cannot spread connections over more ephemeral ports.
    pub fn is_ipv6_literal(&self) -> bool {
        self.base.host_str().is_some_and(|host| host.starts_with('['))
    }
}

/// Accepts `localhost` and loopback IP literals (`127.0.0.0/8`, `::1`, IPv4-mapped loopback).
pub fn ensure_loopback_host(host: &str) -> Result<()> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.eq_ignore_ascii_case("localhost") || bare.eq_ignore_ascii_case("localhost.") {
        return Ok(());
    }
    match bare.parse::<IpAddr>() {
        Ok(ip) if is_loopback(ip) => Ok(()),
        Ok(ip) => bail!(
            "{ip} is not a loopback address: chat-bench only sends traffic to this machine (127.0.0.0/8, localhost, ::1)"
        ),
        Err(_) => bail!(
            "host {host:?} is not loopback: chat-bench only sends traffic to this machine (127.0.0.0/8, localhost, ::1)"
        ),
    }
}

/// How chat-bench opens every WebSocket: to loopback addresses only, from `source` when
/// given, with a read buffer sized for the connection's traffic
/// (`chat_client::connect::{ACTIVE_READ_BUFFER, IDLE_READ_BUFFER}`).
pub fn ws_options(source: Option<IpAddr>, read_buffer: usize) -> ConnectOptions {
    ConnectOptions { source, read_buffer: Some(read_buffer), loopback_only: true }
}

/// Checks a PostgreSQL URL (`postgres://user@host:port/db`) or key/value connection string
/// (`host=... dbname=...`): every host must be loopback or a Unix socket directory.
pub fn check_database_url(raw: &str) -> Result<()> {
    let hosts: Vec<String> = if raw.contains("://") {
        let url = Url::parse(raw).context("--database-url is not a URL")?;
        let mut hosts: Vec<String> = url.host_str().map(str::to_owned).into_iter().collect();
        hosts.extend(
            url.query_pairs()
                .filter(|(key, _)| key == "host" || key == "hostaddr")
                .map(|(_, value)| value.into_owned()),
        );
        hosts
    } else {
        raw.split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .filter(|(key, _)| *key == "host" || *key == "hostaddr")
            .map(|(_, value)| value.to_owned())
            .collect()
    };
    for host in hosts.iter().flat_map(|h| h.split(',')) {
        // An empty host or a directory means a Unix socket: local by construction.
        if host.is_empty() || host.starts_with('/') || host.starts_with("%2F") {
            continue;
        }
        ensure_loopback_host(host).context("refusing --database-url")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str) -> Result<String> {
        Target::parse(url).map(|t| t.as_str().to_owned())
    }

    #[test]
    fn loopback_urls_are_accepted() {
        for url in [
            "http://127.0.0.1:8000",
            "http://127.0.0.2:8000/",
            "http://127.255.255.254",
            "http://localhost:8000",
            "http://LOCALHOST:8000",
            "http://[::1]:8000",
            "http://[::ffff:127.0.0.1]:8000",
        ] {
            assert!(check(url).is_ok(), "{url} should be accepted");
        }
    }

    #[test]
    fn other_hosts_are_refused_with_a_clear_error() {
        for url in [
            "http://10.0.0.1:8000",
            "http://192.168.1.2",
            "http://172.16.0.1",
            "http://8.8.8.8",
            "http://[2001:db8::1]",
            "http://0.0.0.0:8000",
            "http://example.com",
            "http://localhost.example.com",
            "http://128.0.0.1",
        ] {
            let error = check(url).err().map(|e| format!("{e:#}")).unwrap_or_default();
            assert!(error.contains("refusing --url"), "{url}: {error}");
            assert!(error.contains("loopback"), "{url}: {error}");
        }
    }

    #[test]
    fn https_and_other_schemes_are_refused() {
        assert!(check("https://127.0.0.1").is_err());
        assert!(check("ftp://127.0.0.1").is_err());
        assert!(check("not a url").is_err());
    }

    #[test]
    fn api_and_websocket_urls_are_built_from_the_base() {
        let target = Target::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(target.http("api/channels").unwrap().as_str(), "http://127.0.0.1:8000/api/channels");
        assert_eq!(target.ws("a.b+c").unwrap().as_str(), "ws://127.0.0.1:8000/api/ws?token=a.b%2Bc");
        let prefixed = Target::parse("http://localhost:9000/chat").unwrap();
        assert_eq!(prefixed.http("api/users/me").unwrap().as_str(), "http://localhost:9000/chat/api/users/me");
        assert!(!prefixed.is_ipv6_literal());
        assert!(Target::parse("http://[::1]:1").unwrap().is_ipv6_literal());
    }

    #[test]
    fn database_urls_must_be_local() {
        for ok in [
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgresql://u:p@localhost/db",
            "postgres:///db?host=/var/run/postgresql",
            "host=/tmp dbname=x",
            "host=127.0.0.1 port=5432",
        ] {
            assert!(check_database_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "postgres://postgres@db.example.com/postgres",
            "postgres://u@127.0.0.1/db?host=10.1.1.1",
            "host=10.0.0.5 dbname=x",
        ] {
            assert!(check_database_url(bad).is_err(), "{bad}");
        }
    }
}
