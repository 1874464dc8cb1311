//! The one log line an operator reads first: where the server listens, which database it
//! uses and how it found it, whether Redis fan-out is on, this node's id, and where the
//! documentation is. One event with structured fields, so it is one line in either
//! `LOG_FORMAT` and a JSON log can be queried for it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// How the server came to use its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseOrigin {
    /// `DATABASE_URL` named it.
    Configured,
    /// No `DATABASE_URL`: a PostgreSQL already running on this machine.
    Found,
    /// No `DATABASE_URL` and none running: this process started the project-local cluster
    /// and stops it on exit.
    Started,
}

impl fmt::Display for DatabaseOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Configured => "DATABASE_URL",
            Self::Found => "found running",
            Self::Started => "started by this process",
        })
    }
}

/// What the banner says.
pub struct Banner<'a> {
    pub app_name: &'a str,
    /// The address the listener is bound to.
    pub listen: SocketAddr,
    pub database_url: &'a str,
    pub database_origin: DatabaseOrigin,
    /// `Some` with the Redis URL when fan-out is on.
    pub redis_url: Option<&'a str>,
    pub redis_namespace: &'a str,
    /// This node's id on the Redis topic; `None` for a single node.
    pub node: Option<uuid::Uuid>,
}

impl Banner<'_> {
    /// The URL to open: the bound address, with a wildcard address (`0.0.0.0`, `::`) shown as
    /// the loopback address, which reaches it from the same machine.
    pub fn url(&self) -> String {
        let ip = match self.listen.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.listen.port()))
    }

    pub fn log(&self) {
        let url = self.url();
        let redis = match self.redis_url {
            Some(redis) => format!("on ({}, namespace {})", without_secrets(redis), self.redis_namespace),
            None => "off (single node)".to_owned(),
        };
        let node = self.node.map_or_else(|| "single".to_owned(), |id| id.to_string());
        tracing::info!(
            app = %self.app_name,
            url = %url,
            listen = %self.listen,
            database = %without_secrets(self.database_url),
            database_origin = %self.database_origin,
            redis = %redis,
            node = %node,
            docs = %format!("{url}/docs"),
            "{} is ready on {url}",
            self.app_name,
        );
    }
}

/// `scheme://host:port/path` of a URL: no user, no password, no query (PostgreSQL URLs may
/// carry `?password=`), so the banner can be shown and logged anywhere.
pub fn without_secrets(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let mut out = String::new();
    if !scheme.is_empty() {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(host);
    if !path.is_empty() {
        out.push('/');
        out.push_str(path);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_and_query() {
        for (url, shown) in [
            ("postgres://postgres@127.0.0.1:5432/chat", "postgres://127.0.0.1:5432/chat"),
            ("postgresql://u:p%40ss@db:5432/chat_db?sslmode=require&password=x", "postgresql://db:5432/chat_db"),
            ("redis://:secret@redis:6379/0", "redis://redis:6379/0"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("postgres:///chat?host=/run/postgresql", "postgres:///chat"),
        ] {
            assert_eq!(without_secrets(url), shown, "{url}");
        }
    }

    #[test]
    fn a_wildcard_address_is_shown_as_loopback() {
        let banner = |listen: &str| Banner {
            app_name: "Chat API",
            listen: listen.parse().unwrap(),
            database_url: "",
            database_origin: DatabaseOrigin::Configured,
            redis_url: None,
            redis_namespace: "chat",
            node: None,
        };
        assert_eq!(banner("0.0.0.0:8000").url(), "http://127.0.0.1:8000");
        assert_eq!(banner("192.168.1.5:8001").url(), "http://192.168.1.5:8001");
        assert_eq!(banner("[::1]:8000").url(), "http://[::1]:8000");
    }
}
