//! The threads that run WebSocket sessions, beside the workers that answer requests.
//!
//! An actix worker that ran the sessions of the connections it upgraded would queue a
//! request that arrives while it writes an event to its 500 sockets behind all 500 of them,
//! and so would the answer of the very post whose `publish` woke those sessions: a worker
//! runs its tasks in the order they were woken (BENCHMARKS.md, rounds seven and eight). So
//! an upgraded connection moves to a socket thread, a single-threaded runtime of its own,
//! and the kernel's scheduler, not one task queue, shares the cores between the requests
//! and the fan-out.
//!
//! A connection goes to the thread with the fewest sessions. Its socket leaves the worker's
//! reactor (`into_std`) and joins the thread's; nothing the client sent is lost on the way,
//! since the kernel keeps it and `epoll` reports a readable socket when it is registered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_http::ws::{CloseCode, CloseReason, Parser};
use bytes::BytesMut;
use tokio::sync::mpsc;

use crate::socket::{Session, serve};

/// A cheap-to-clone handle to the socket threads.
#[derive(Clone)]
pub struct SocketThreads(Arc<Shared>);

struct Shared {
    /// Each thread's queue, in thread order; emptied by [`SocketThreads::close`], after which
    /// a connection upgraded is told 1001 instead.
    queues: Mutex<Vec<mpsc::UnboundedSender<Job>>>,
    /// Each thread's running sessions, in thread order.
    sessions: Vec<Arc<AtomicUsize>>,
    /// Yields `None` once every thread has finished (each holds a sender).
    finished: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

struct Job {
    io: std::net::TcpStream,
    already_read: BytesMut,
    session: Session,
}

impl SocketThreads {
    /// Starts `count` threads (at least one), named `socket-N`.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let (done, finished) = mpsc::channel(1);
        let (queues, sessions): (Vec<_>, Vec<_>) = (0..count.max(1))
            .map(|n| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let (jobs, queue) = mpsc::unbounded_channel();
                let sessions = Arc::new(AtomicUsize::new(0));
                let counted = sessions.clone();
                let done = done.clone();
                std::thread::Builder::new()
                    .name(format!("socket-{n}"))
                    .spawn(move || run(&runtime, queue, counted, done))?;
                Ok((jobs, sessions))
            })
            .collect::<std::io::Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        Ok(Self(Arc::new(Shared { queues: Mutex::new(queues), sessions, finished: tokio::sync::Mutex::new(finished) })))
    }

    /// Runs `session` on `io`, whose 101 has been sent, on the thread with the fewest
    /// sessions. After [`close`](Self::close) the client is sent a 1001 close instead, and
    /// the connection dropped.
    pub fn hand_over(&self, io: tokio::net::TcpStream, already_read: BytesMut, session: Session) {
        let io = match io.into_std() {
            Ok(io) => io,
            Err(error) => {
                tracing::debug!(%error, "an upgraded connection could not leave its worker");
                return;
            }
        };
        let queues = self.0.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((queue, sessions)) =
            queues.iter().zip(&self.0.sessions).min_by_key(|(_, sessions)| sessions.load(Ordering::Relaxed))
        else {
            going_away(&io);
            return;
        };
        sessions.fetch_add(1, Ordering::Relaxed);
        if queue.send(Job { io, already_read, session }).is_err() {
            sessions.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Sessions running now, over all threads.
    pub fn sessions(&self) -> usize {
        self.0.sessions.iter().map(|count| count.load(Ordering::Relaxed)).sum()
    }

    /// Takes no more connections, and waits (at most `within`) for the threads to finish:
    /// each does once its sessions have ended, which they do when the server's shutdown
    /// switch flips. True if they all finished in time.
    pub async fn close(&self, within: Duration) -> bool {
        self.close_now();
        let mut finished = self.0.finished.lock().await;
        tokio::time::timeout(within, finished.recv()).await.is_ok()
    }

    /// Takes no more connections, without waiting for the threads (for `Drop`).
    pub fn close_now(&self) {
        self.0.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

/// Tells a client upgraded as the server closed that it is going away (1001), as the
/// sessions that were running are told; one write, as much as the socket takes.
fn going_away(io: &std::net::TcpStream) {
    let mut close = BytesMut::new();
    let reason = CloseReason { code: CloseCode::Away, description: Some("server shutting down".into()) };
    Parser::write_close(&mut close, Some(reason), false);
    if let Err(error) = std::io::Write::write(&mut &*io, &close) {
        tracing::debug!(%error, "could not tell a connection upgraded at shutdown that the server is going away");
    }
}

fn run(
    runtime: &tokio::runtime::Runtime,
    mut queue: mpsc::UnboundedReceiver<Job>,
    sessions: Arc<AtomicUsize>,
    _done: mpsc::Sender<()>,
) {
    let local = tokio::task::LocalSet::new();
    local.block_on(runtime, async move {
        while let Some(Job { io, already_read, session }) = queue.recv().await {
            let counted = Counted(sessions.clone());
            tokio::task::spawn_local(async move {
                match tokio::net::TcpStream::from_std(io) {
                    Ok(io) => serve(io, already_read, session).await,
                    Err(error) => tracing::debug!(%error, "an upgraded connection could not join its socket thread"),
                }
                drop(counted);
            });
        }
    });
    // The sessions still running end when the server's shutdown switch flips.
    runtime.block_on(local);
}

/// One running session, counted until it ends (or panics).
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use actix_codec::{Decoder as _, Encoder as _};
    use actix_http::ws::{Codec, Message};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::sync::{oneshot, watch};

    use super::*;
    use crate::socket::Received;

    /// An accepted connection and its client.
    async fn connection() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        (listener.accept().await.unwrap().0, client)
    }

    /// A text frame as a client sends it (masked).
    fn frame(text: &str) -> BytesMut {
        let mut bytes = BytesMut::new();
        Codec::new().client_mode().encode(Message::Text(text.to_owned().into()), &mut bytes).unwrap();
        bytes
    }

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn a_session_runs_on_a_socket_thread_and_reads_what_came_before_the_handover() {
        let threads = SocketThreads::start(1).unwrap();
        let (server, mut client) = connection().await;
        // The second frame is in the socket, and this runtime's reactor has already seen it
        // arrive: the socket thread must still find it.
        client.write_all(&frame("second")).await.unwrap();
        server.readable().await.unwrap();
        let (report, reported) = oneshot::channel();
        threads.hand_over(
            server,
            frame("first"),
            Box::new(move |out, mut incoming| {
                Box::pin(async move {
                    let mut texts = Vec::new();
                    for _ in 0..2 {
                        match incoming.recv().await {
                            Some(Ok(Received::Text(text))) => texts.push(String::from_utf8(text.to_vec()).unwrap()),
                            other => panic!("expected a text, got {other:?}"),
                        }
                    }
                    let _ = report.send((thread_name(), texts));
                    out.text("bye").unwrap();
                })
            }),
        );

        let (thread, texts) = tokio::time::timeout(Duration::from_secs(5), reported).await.unwrap().unwrap();
        assert_eq!(thread, "socket-0");
        assert_eq!(texts, ["first", "second"]);
        // What the session wrote reaches the client, then the connection closes.
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut received)).await.unwrap().unwrap();
        assert!(received.windows(3).any(|w| w == b"bye"), "{received:?}");
    }

    #[tokio::test]
    async fn sessions_spread_over_the_threads_and_close_waits_for_them() {
        let threads = SocketThreads::start(2).unwrap();
        let (release, released) = watch::channel(false);
        let (report, mut reports) = mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let (server, client) = connection().await;
            clients.push(client);
            let (report, mut released) = (report.clone(), released.clone());
            threads.hand_over(
                server,
                BytesMut::new(),
                Box::new(move |_out, _incoming| {
                    Box::pin(async move {
                        report.send(thread_name()).unwrap();
                        let _ = released.wait_for(|released| *released).await;
                    })
                }),
            );
        }
        let mut names = vec![reports.recv().await.unwrap(), reports.recv().await.unwrap()];
        names.sort();
        assert_eq!(names, ["socket-0", "socket-1"], "each session on the thread with fewer");
        assert_eq!(threads.sessions(), 2);

        assert!(!threads.close(Duration::from_millis(100)).await, "the sessions are still running");
        // Closed: a connection upgraded now is told 1001 and dropped.
        let (server, mut late) = connection().await;
        threads.hand_over(server, BytesMut::new(), Box::new(|_, _| panic!("no session runs after close")));
        let mut told = Vec::new();
        late.read_to_end(&mut told).await.unwrap();
        let mut told = BytesMut::from(&told[..]);
        let frame = Codec::new().client_mode().decode(&mut told).unwrap();
        assert!(
            matches!(frame, Some(actix_http::ws::Frame::Close(Some(CloseReason { code: CloseCode::Away, .. })))),
            "a 1001 close, then the end: {frame:?}"
        );

        release.send(true).unwrap();
        assert!(threads.close(Duration::from_secs(5)).await, "the threads finish once their sessions end");
        assert_eq!(threads.sessions(), 0);
    }
}
