//! The API's listener: actix-web's app on actix-http's HTTP/1 service, with WebSocket
//! connections handed over to their sessions.
//!
//! `HttpServer` keeps an upgraded WebSocket inside actix-http's HTTP/1 dispatcher for the
//! connection's whole life, as a streaming response, and with it the dispatcher's 8 KiB read
//! and write buffers: a third of what an idle socket cost (BENCHMARKS.md, round five). This
//! listener runs the same actix-server and `HttpService` that `HttpServer` would, with one
//! difference: a request asking for a WebSocket goes to [`upgrade`]. It runs the app for
//! the handshake (the same routes, middleware and token check as any request), writes the
//! response, and if that is the 101, hands the bare connection to a socket thread
//! (`realtime::SocketThreads`) that runs the session on it. The dispatcher and its buffers
//! are gone by then, and the worker goes back to requests.

use std::future::poll_fn;
use std::net::TcpListener;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;
use std::{fmt, io};

use actix_codec::Framed;
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::h1::{Codec, Message};
use actix_http::{ConnectionType, HttpMessage as _, HttpService, KeepAlive, Request, Response, StatusCode};
use actix_server::Server;
use actix_service::{IntoServiceFactory, Service, ServiceFactory, fn_factory, fn_service};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use futures_util::{FutureExt as _, SinkExt as _, TryFutureExt as _};
use realtime::Handover;

/// How the listener runs.
pub struct Options {
    /// Worker threads; 0 for one per core.
    pub workers: usize,
    pub shutdown_timeout_seconds: u64,
    /// The kernel drops a connection whose sent data stays unacknowledged this long.
    pub send_timeout: Duration,
    /// Where upgraded connections run their sessions.
    pub sockets: realtime::SocketThreads,
}

/// Serves `app` on `listener`, as `HttpServer::new(app).listen(listener)` would, but with
/// WebSocket upgrades handed over. Signals are left to the caller.
pub fn serve<F, I, S, B>(listener: TcpListener, options: &Options, app: F) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig, Error = actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let mut builder = Server::build();
    if options.workers > 0 {
        builder = builder.workers(options.workers);
    }
    let shutdown = builder.graceful_shutdown_signal();
    let send_timeout = options.send_timeout;
    let sockets = options.sockets.clone();
    let builder = builder.listen("chat-api", listener, move || {
        // What `HttpServer` gives each app; semver-exempt in actix-web, so the version is
        // pinned by Cargo.lock and a change shows up as a build error here.
        let config = AppConfig::__priv_test_new(false, addr.to_string(), addr);
        let shutdown = shutdown.clone();
        let sockets = sockets.clone();
        // One app per worker, for requests and handshakes alike (an app's routes and their
        // compiled patterns are megabytes).
        let started = app()
            .into_factory()
            .new_service(config)
            .map(|started| started.map(Rc::new).map_err(|error| tracing::error!(?error, "could not start the app")))
            .boxed_local()
            .shared();
        let handshakes = {
            let started = started.clone();
            fn_factory(move || {
                let started = started.clone();
                let sockets = sockets.clone();
                async move {
                    let app = started.await?;
                    Ok::<_, ()>(fn_service(move |(req, framed)| upgrade(app.clone(), sockets.clone(), req, framed)))
                }
            })
        };
        let requests = fn_factory(move || started.clone().map_ok(|app| SharedApp { app }));
        HttpService::build()
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .keep_alive(KeepAlive::default())
            .client_request_timeout(Duration::from_secs(10))
            .client_disconnect_timeout(Duration::from_secs(1))
            .local_addr(addr)
            .on_connect_ext(move |tcp: &TcpStream, _| tune(tcp, send_timeout))
            .upgrade(handshakes)
            .finish(requests)
            .tcp()
    })?;
    Ok(builder.shutdown_timeout(options.shutdown_timeout_seconds).disable_signals().run())
}

/// Socket options for every accepted connection.
///
/// - `TCP_NODELAY`: every write leaves at once. With Nagle's algorithm a frame written while
///   the connection's previous one is unacknowledged waits for that acknowledgement, which
///   the client's kernel may hold back for up to 40 ms (delayed ACK): an event every few
///   milliseconds to a socket hit that wait again and again (BENCHMARKS.md, round seven).
///   Responses and frames are already written whole, one write per batch, so there is
///   nothing for Nagle to join.
/// - `TCP_USER_TIMEOUT`: a client that stops reading (a stalled download) would otherwise
///   hold its connection, and the stream behind it, for ever: actix has no write timeout,
///   and a body stream is not polled while the socket is full.
fn tune(tcp: &TcpStream, send_timeout: Duration) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "could not turn off Nagle's algorithm for a connection");
    }
    if let Err(error) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(send_timeout)) {
        tracing::debug!(%error, "could not set the send timeout of a connection");
    }
}

/// The worker's app, shared by the request and handshake paths.
struct SharedApp<S> {
    app: Rc<S>,
}

impl<S: Service<Request>> Service<Request> for SharedApp<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    actix_service::forward_ready!(app);

    fn call(&self, req: Request) -> Self::Future {
        self.app.call(req)
    }
}

/// A request that asked for a WebSocket (`Upgrade: websocket`), with its connection: the
/// app answers it, and a 101 whose handler left a session in the request's [`Handover`]
/// turns the connection over to that session. Any other answer is written whole and the
/// connection closed, as a client that asked to upgrade expects.
async fn upgrade<S, B>(
    app: Rc<S>,
    sockets: realtime::SocketThreads,
    req: Request,
    mut framed: Framed<TcpStream, Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request>,
    S::Error: Into<actix_web::Error>,
    S::Response: Into<Response<B>>,
    B: MessageBody + 'static,
{
    let handover = Handover::default();
    req.extensions_mut().insert(handover.clone());
    // Boxed: the call's future is only needed for the handshake, and the connection's
    // future would otherwise be as large as it for as long as the socket is open.
    let response = match Box::pin(app.call(req)).await {
        Ok(response) => response.into().map_into_boxed_body(),
        Err(error) => error.into().error_response().map_into_boxed_body().into(),
    };
    match handover.take() {
        Some(session) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let (head, _) = response.into_parts();
            framed.send(Message::Item((head, BodySize::None))).await?;
            // The rest of the parts (the codec, the 8 KiB write buffer) are dropped here,
            // not kept for the life of the socket.
            let (io, already_read) = {
                let parts = framed.into_parts();
                (parts.io, parts.read_buf)
            };
            sockets.hand_over(io, already_read, session);
            Ok(())
        }
        _ => Ok(write_whole(&mut framed, response).await?),
    }
}

async fn write_whole(framed: &mut Framed<TcpStream, Codec>, response: Response<BoxBody>) -> io::Result<()> {
    let (mut head, body) = response.into_parts();
    head.head_mut().set_connection_type(ConnectionType::Close);
    let size = body.size();
    framed.send(Message::Item((head, size))).await?;
    let mut body = pin!(body);
    while let Some(chunk) = poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        let chunk = chunk.map_err(|error| io::Error::other(error.to_string()))?;
        framed.send(Message::Chunk(Some(chunk))).await?;
    }
    framed.send(Message::Chunk(None)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_accepted_connection_writes_at_once_and_gives_up_on_a_stalled_client() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap(), "Nagle is on until the listener turns it off");

        tune(&accepted, Duration::from_secs(7));

        assert!(accepted.nodelay().unwrap());
        assert_eq!(socket2::SockRef::from(&accepted).tcp_user_timeout().unwrap(), Some(Duration::from_secs(7)));
    }
}
