//! The WebSocket itself, on the connection it was upgraded on.
//!
//! The listener hands an upgraded connection over (`http_api::listener`), and [`serve`] runs
//! the session on it with a [`Pump`] between the socket and two buffers it shares with the
//! session: nothing of the HTTP/1 dispatcher, whose two 8 KiB buffers were most of an idle
//! socket, stays with the connection. A session writes its frames straight into the
//! outgoing buffer ([`Outgoing`]), already framed, and the pump takes the whole buffer the
//! next time it runs: every frame written while the session runs (a batch of events, a
//! resume's replay) leaves in one write, with no queue between the session and the socket.
//! The pump reads what has arrived through a buffer on its stack and appends it for the
//! session, which parses it with actix-http's codec and joins continuation frames
//! ([`Incoming`]). An idle connection holds no buffer at all.
//!
//! The session and the pump run in one task, so the buffers they share need no lock.

use std::cell::RefCell;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_codec::Decoder as _;
use actix_http::ws::{CloseReason, Codec, Frame, Item, OpCode, Parser, ProtocolError};
use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::future::{Either, LocalBoxFuture, select};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Past this many unsent bytes a writer waits for the client to read. The hub's queue in
/// front of the session then fills, and a client that stays behind is closed as slow.
pub const HIGH_WATER: usize = 64 * 1024;

/// RFC 6455: a close frame's payload is at most 125 bytes, 2 of them the code.
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// The pump reads through a buffer of this size on its stack...
const READ_CHUNK: usize = 4096;
/// ...and stops reading while this much is waiting for the session: a frame over the limit
/// fails as soon as its header is parsed, so this is room for one whole frame and more.
const READ_AHEAD: usize = 2 * crate::protocol::MAX_FRAME_BYTES;

/// After the session ends, how long its last frames and the close get to leave (and the
/// client to close its side) before the connection is dropped. The session has already
/// waited for its frames to be taken, so this is the dispatcher's disconnect timeout.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The socket is gone: the client disconnected or the connection broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A close frame is written, or the writer has gone: the pump sends what is left, then
    /// closes the connection.
    Closing,
    /// The connection is closed: nothing more reaches the client.
    Gone,
}

struct Shared {
    inner: RefCell<Inner>,
    /// Wakes a writer waiting for room or for the end.
    taken: Notify,
}

struct Inner {
    /// Framed and not yet taken by the pump.
    out: BytesMut,
    state: State,
    /// Read and not yet taken by the session.
    inbound: BytesMut,
    /// The client closed its side (or reading failed): nothing more arrives.
    eof: bool,
    /// The pump, waiting for frames to send or for the session to take what it read.
    pump: Option<Waker>,
    /// The session polling [`Incoming`].
    reader: Option<Waker>,
}

impl Shared {
    fn new(inbound: BytesMut) -> Rc<Self> {
        Rc::new(Shared {
            inner: RefCell::new(Inner {
                out: BytesMut::new(),
                state: State::Open,
                inbound,
                eof: false,
                pump: None,
                reader: None,
            }),
            taken: Notify::new(),
        })
    }

    /// The connection is closed: writers fail, waiters and the reader wake.
    fn gone(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.state = State::Gone;
        inner.out = BytesMut::new();
        wake(&mut inner.reader);
        drop(inner);
        self.taken.notify_one();
    }
}

/// A socket session waiting for its connection. The handshake (an actix-web handler) finds
/// one among the request's extensions and leaves the session in it; the listener writes the
/// 101 and hands the connection to a socket thread (`SocketThreads`), which runs the session
/// on it with [`serve`]. A request that did not come
/// through the listener's upgrade path has none, and cannot be upgraded.
#[derive(Clone, Default)]
pub struct Handover(Rc<RefCell<Option<Session>>>);

/// What runs on an upgraded connection.
/// `Send`, because the session runs on a socket thread (`SocketThreads`), not on the worker
/// that answered the handshake.
pub type Session = Box<dyn FnOnce(Outgoing, Incoming) -> LocalBoxFuture<'static, ()> + Send>;

impl Handover {
    pub fn put(&self, session: Session) {
        *self.0.borrow_mut() = Some(session);
    }

    pub fn take(&self) -> Option<Session> {
        self.0.borrow_mut().take()
    }
}

/// Runs `session` on a connection whose 101 has been sent; `already_read` is what the
/// client sent after its handshake, read with it. Returns once the session has ended and
/// the connection is closed.
pub async fn serve<T>(io: T, already_read: BytesMut, session: Session)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    // Copied, so the 8 KiB the dispatcher read the handshake into is not kept.
    let inbound = if already_read.is_empty() { BytesMut::new() } else { BytesMut::from(&already_read[..]) };
    drop(already_read);
    let (out, incoming, pump) = connection(io, inbound, crate::protocol::MAX_FRAME_BYTES);
    let session = session(out, incoming);
    match select(pin!(pump), session).await {
        // The connection broke: the session sees it on its next read or write.
        Either::Left(((), session)) => session.await,
        // The session has ended and dropped its writer: what it wrote leaves, then the close.
        Either::Right(((), pump)) => {
            let _ = tokio::time::timeout(CLOSE_GRACE, pump).await;
        }
    }
}

/// The two halves a session uses and the pump that moves their bytes.
fn connection<T>(io: T, inbound: BytesMut, max_frame_bytes: usize) -> (Outgoing, Incoming, Pump<T>) {
    let shared = Shared::new(inbound);
    let incoming = Incoming {
        shared: shared.clone(),
        buf: BytesMut::new(),
        codec: Codec::new().max_size(max_frame_bytes),
        max_message_bytes: max_frame_bytes,
        continuation: None,
    };
    let pump = Pump { io, shared: shared.clone(), sending: Bytes::new(), shut_down: false };
    (Outgoing { shared }, incoming, pump)
}

/// The write half: frames are framed into the outgoing buffer as they are written.
pub struct Outgoing {
    shared: Rc<Shared>,
}

impl Outgoing {
    /// Appends a text frame. It leaves with whatever else is written before the session
    /// next yields.
    pub fn text(&self, text: &str) -> Result<(), Closed> {
        self.write(text.as_bytes(), OpCode::Text)
    }

    pub fn ping(&self) -> Result<(), Closed> {
        self.write(b"", OpCode::Ping)
    }

    pub fn pong(&self, payload: &[u8]) -> Result<(), Closed> {
        self.write(&payload[..payload.len().min(125)], OpCode::Pong)
    }

    /// Appends the close frame; the connection closes once the client has been sent it.
    pub fn close(&self, mut reason: CloseReason) -> Result<(), Closed> {
        if let Some(description) = reason.description.as_mut() {
            let mut end = description.len().min(MAX_CLOSE_REASON_BYTES);
            while !description.is_char_boundary(end) {
                end -= 1;
            }
            description.truncate(end);
        }
        let mut inner = self.shared.inner.borrow_mut();
        if inner.state != State::Open {
            return Err(Closed);
        }
        Parser::write_close(&mut inner.out, Some(reason), false);
        inner.state = State::Closing;
        wake(&mut inner.pump);
        Ok(())
    }

    fn write(&self, payload: &[u8], op: OpCode) -> Result<(), Closed> {
        let mut inner = self.shared.inner.borrow_mut();
        if inner.state != State::Open {
            return Err(Closed);
        }
        Parser::write_message(&mut inner.out, payload, op, true, false);
        wake(&mut inner.pump);
        Ok(())
    }

    /// Unsent bytes.
    pub fn pending(&self) -> usize {
        self.shared.inner.borrow().out.len()
    }

    /// Waits until at most `bytes` are unsent; fails once the socket is gone.
    pub async fn drained_to(&self, bytes: usize) -> Result<(), Closed> {
        loop {
            let taken = self.shared.taken.notified();
            {
                let inner = self.shared.inner.borrow();
                if inner.state == State::Gone {
                    return Err(Closed);
                }
                if inner.out.len() <= bytes {
                    return Ok(());
                }
            }
            taken.await;
        }
    }
}

impl Drop for Outgoing {
    /// A writer that leaves without a close frame still closes the connection (after what
    /// it wrote).
    fn drop(&mut self) {
        let mut inner = self.shared.inner.borrow_mut();
        if inner.state == State::Open {
            inner.state = State::Closing;
        }
        wake(&mut inner.pump);
    }
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        slot => *slot = Some(cx.waker().clone()),
    }
}

/// Moves bytes between the socket and the session's buffers; ends when the connection is
/// closed, by either side.
struct Pump<T> {
    io: T,
    shared: Rc<Shared>,
    /// What the socket has not accepted yet of the last buffer taken.
    sending: Bytes,
    /// The last frame is sent and the write side shut down: the pump waits for the client
    /// to close its side.
    shut_down: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Pump<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        register(&mut this.shared.inner.borrow_mut().pump, cx);
        let ended = if this.shut_down { this.poll_discard(cx) } else { this.poll_io(cx) };
        if ended.is_ready() {
            this.shared.gone();
        }
        ended
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Pump<T> {
    /// Reads and writes until neither can go on; ready when the connection has ended.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.poll_read(cx).is_ready() {
            return Poll::Ready(());
        }
        match self.poll_write(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(()),
            Poll::Ready(Ok(())) => {
                self.shut_down = true;
                self.poll_discard(cx)
            }
        }
    }

    /// Appends what has arrived for the session; ready when reading failed.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            {
                let inner = self.shared.inner.borrow();
                if inner.eof || inner.inbound.len() >= READ_AHEAD {
                    // The session wakes the pump when it takes what is waiting.
                    return Poll::Pending;
                }
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {
                    let mut inner = self.shared.inner.borrow_mut();
                    if read.filled().is_empty() {
                        inner.eof = true;
                    } else {
                        inner.inbound.extend_from_slice(read.filled());
                    }
                    wake(&mut inner.reader);
                }
            }
        }
    }

    /// Sends what the session wrote; ready with `Ok` once the connection is closing, all
    /// is sent and the write side is shut down.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            while !self.sending.is_empty() {
                match Pin::new(&mut self.io).poll_write(cx, &self.sending) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => self.sending.advance(n),
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let mut inner = self.shared.inner.borrow_mut();
            if !inner.out.is_empty() {
                // Taken whole, so an idle connection holds no buffer and a burst's does not stay.
                self.sending = std::mem::take(&mut inner.out).freeze();
                drop(inner);
                self.shared.taken.notify_one();
                continue;
            }
            match inner.state {
                State::Open => return Poll::Pending,
                State::Closing => {
                    drop(inner);
                    return Pin::new(&mut self.io).poll_shutdown(cx);
                }
                State::Gone => return Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
            }
        }
    }

    /// After the close: reads and drops whatever comes until the client closes too, so the
    /// connection ends with its FIN and not with a reset that could cut off the close frame.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {}
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A whole message from the client, continuation frames joined.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<CloseReason>),
}

/// The read half.
pub struct Incoming {
    shared: Rc<Shared>,
    buf: BytesMut,
    codec: Codec,
    max_message_bytes: usize,
    /// A fragmented message being joined: whether it is text, and its parts so far.
    continuation: Option<(bool, BytesMut)>,
}

impl Incoming {
    /// The next message; `None` once the client has gone (or the connection dropped). A
    /// frame or a joined message over the size limit is `ProtocolError::Overflow`.
    pub async fn recv(&mut self) -> Option<Result<Received, ProtocolError>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Received, ProtocolError>>> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => match self.join(frame) {
                    Some(message) => return Poll::Ready(Some(message)),
                    None => continue,
                },
                Ok(None) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
            if self.buf.is_empty() {
                // Frames split off share its allocation: let it go with them.
                self.buf = BytesMut::new();
            }
            let mut inner = self.shared.inner.borrow_mut();
            if !inner.inbound.is_empty() {
                if inner.inbound.len() >= READ_AHEAD {
                    wake(&mut inner.pump);
                }
                let arrived = std::mem::take(&mut inner.inbound);
                if self.buf.is_empty() {
                    self.buf = arrived;
                } else {
                    self.buf.extend_from_slice(&arrived);
                }
                continue;
            }
            if inner.eof || inner.state == State::Gone {
                return Poll::Ready(None);
            }
            register(&mut inner.reader, cx);
            return Poll::Pending;
        }
    }

    /// A frame as a message, or `None` while a fragmented message is still incomplete.
    fn join(&mut self, frame: Frame) -> Option<Result<Received, ProtocolError>> {
        let (text, part, last) = match frame {
            Frame::Text(bytes) => return Some(Ok(Received::Text(bytes))),
            Frame::Binary(bytes) => return Some(Ok(Received::Binary(bytes))),
            Frame::Ping(bytes) => return Some(Ok(Received::Ping(bytes))),
            Frame::Pong(bytes) => return Some(Ok(Received::Pong(bytes))),
            Frame::Close(reason) => return Some(Ok(Received::Close(reason))),
            Frame::Continuation(Item::FirstText(part)) => (Some(true), part, false),
            Frame::Continuation(Item::FirstBinary(part)) => (Some(false), part, false),
            Frame::Continuation(Item::Continue(part)) => (None, part, false),
            Frame::Continuation(Item::Last(part)) => (None, part, true),
        };
        let (is_text, joined) = match (text, self.continuation.as_mut()) {
            (Some(is_text), _) => self.continuation.insert((is_text, BytesMut::new())),
            (None, Some(current)) => current,
            // The codec refuses a continuation that was never started.
            (None, None) => return Some(Err(ProtocolError::ContinuationNotStarted)),
        };
        if joined.len() + part.len() > self.max_message_bytes {
            self.continuation = None;
            return Some(Err(ProtocolError::Overflow));
        }
        joined.extend_from_slice(&part);
        if !last {
            return None;
        }
        let is_text = *is_text;
        let joined = std::mem::take(joined).freeze();
        self.continuation = None;
        Some(Ok(if is_text { Received::Text(joined) } else { Received::Binary(joined) }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use actix_codec::Encoder as _;
    use actix_http::ws::{CloseCode, Message};
    use futures_util::FutureExt as _;
    use proptest::prelude::*;

    use super::*;

    /// A socket whose every write, shutdown and read the test sees and steers.
    #[derive(Clone, Default)]
    struct Wire(Rc<RefCell<WireState>>);

    #[derive(Default)]
    struct WireState {
        /// Each write the pump made, as it made it.
        writes: Vec<Bytes>,
        /// What the client sends, one chunk per read.
        input: VecDeque<Bytes>,
        client: Client,
        shut_down: bool,
    }

    #[derive(Clone, Copy, Default, PartialEq, Eq)]
    enum Client {
        #[default]
        Reading,
        /// Writes wait: the client is not reading.
        Stalled,
        /// The client has closed its side: reads after the input give 0.
        Closed,
        /// Reads and writes fail: the connection was reset.
        Reset,
    }

    impl Wire {
        fn state(&self) -> std::cell::RefMut<'_, WireState> {
            self.0.borrow_mut()
        }

        /// Everything written, as one buffer.
        fn written(&self) -> BytesMut {
            let mut all = BytesMut::new();
            for write in &self.state().writes {
                all.extend_from_slice(write);
            }
            all
        }
    }

    impl AsyncRead for Wire {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
            let mut state = self.state();
            if state.client == Client::Reset {
                return Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
            }
            match state.input.pop_front() {
                Some(mut chunk) => {
                    let n = chunk.len().min(buf.remaining());
                    buf.put_slice(&chunk.split_to(n));
                    if !chunk.is_empty() {
                        state.input.push_front(chunk);
                    }
                    Poll::Ready(Ok(()))
                }
                None if state.client == Client::Closed => Poll::Ready(Ok(())),
                None => Poll::Pending,
            }
        }
    }

    impl AsyncWrite for Wire {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let mut state = self.state();
            match state.client {
                Client::Reset => return Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into())),
                Client::Stalled => return Poll::Pending,
                Client::Reading | Client::Closed => {}
            }
            state.writes.push(Bytes::copy_from_slice(buf));
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.state().shut_down = true;
            Poll::Ready(Ok(()))
        }
    }

    fn open(max: usize) -> (Wire, Outgoing, Incoming, Pump<Wire>) {
        let wire = Wire::default();
        let (out, incoming, pump) = connection(wire.clone(), BytesMut::new(), max);
        (wire, out, incoming, pump)
    }

    /// Runs the pump until it waits; true once it has ended.
    fn run(pump: &mut Pump<Wire>) -> bool {
        pump.now_or_never().is_some()
    }

    /// Decodes what a client would read from `bytes`.
    fn client_reads(mut bytes: BytesMut) -> Vec<Frame> {
        let mut codec = Codec::new().client_mode().max_size(1 << 20);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut bytes).unwrap() {
            frames.push(frame);
        }
        assert!(bytes.is_empty(), "a partial frame was left over");
        frames
    }

    proptest! {
        /// Whatever frames are written before the pump runs leave in one write, and the
        /// client reads them back in order, each whole.
        #[test]
        fn frames_written_together_leave_in_one_write(texts in prop::collection::vec(".{0,300}", 1..20)) {
            let (wire, out, _incoming, mut pump) = open(1 << 16);
            for text in &texts {
                out.text(text).unwrap();
            }
            prop_assert!(!run(&mut pump));
            prop_assert_eq!(wire.state().writes.len(), 1, "one write holds every frame");
            let read: Vec<String> = client_reads(wire.written())
                .into_iter()
                .map(|frame| match frame {
                    Frame::Text(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            prop_assert_eq!(read, texts);
        }

        /// A message cut into frames and the frames cut into reads anywhere reads back as
        /// the message.
        #[test]
        fn fragmented_messages_are_joined(text in ".{1,400}", parts in 1usize..5, cut in 1usize..50) {
            let mut codec = Codec::new().client_mode();
            let mut wire_bytes = BytesMut::new();
            let bytes = Bytes::from(text.clone().into_bytes());
            let step = bytes.len().div_ceil(parts).max(1);
            let pieces: Vec<Bytes> = bytes.chunks(step).map(Bytes::copy_from_slice).collect();
            if pieces.len() == 1 {
                codec.encode(Message::Text(text.clone().into()), &mut wire_bytes).unwrap();
            } else {
                for (i, piece) in pieces.iter().enumerate() {
                    let item = match i {
                        0 => Item::FirstText(piece.clone()),
                        i if i == pieces.len() - 1 => Item::Last(piece.clone()),
                        _ => Item::Continue(piece.clone()),
                    };
                    codec.encode(Message::Continuation(item), &mut wire_bytes).unwrap();
                }
            }
            codec.encode(Message::Ping(Bytes::from_static(b"p")), &mut wire_bytes).unwrap();
            let (wire, _out, mut reader, mut pump) = open(1 << 16);
            wire.state().input = wire_bytes.chunks(cut).map(Bytes::copy_from_slice).collect();
            prop_assert!(!run(&mut pump));
            let first = reader.recv().now_or_never().unwrap().unwrap().unwrap();
            prop_assert_eq!(first, Received::Text(Bytes::from(text.into_bytes())));
            let second = reader.recv().now_or_never().unwrap().unwrap().unwrap();
            prop_assert_eq!(second, Received::Ping(Bytes::from_static(b"p")));
        }
    }

    #[test]
    fn a_joined_message_over_the_limit_overflows() {
        let mut codec = Codec::new().client_mode();
        let mut bytes = BytesMut::new();
        codec.encode(Message::Continuation(Item::FirstText(Bytes::from(vec![b'a'; 60]))), &mut bytes).unwrap();
        codec.encode(Message::Continuation(Item::Last(Bytes::from(vec![b'a'; 60]))), &mut bytes).unwrap();
        let (wire, _out, mut reader, mut pump) = open(100);
        wire.state().input.push_back(bytes.freeze());
        assert!(!run(&mut pump));
        let error = reader.recv().now_or_never().unwrap().unwrap().unwrap_err();
        assert!(matches!(error, ProtocolError::Overflow), "{error:?}");
    }

    #[test]
    fn close_sends_the_frame_shuts_down_and_refuses_more() {
        let (wire, out, _incoming, mut pump) = open(1 << 16);
        out.text("last").unwrap();
        let long = "é".repeat(100);
        out.close(CloseReason { code: CloseCode::Other(4008), description: Some(long) }).unwrap();
        assert_eq!(out.text("after"), Err(Closed));
        assert!(!run(&mut pump), "the pump waits for the client to close its side");
        assert!(wire.state().shut_down);
        let frames = client_reads(wire.written());
        assert_eq!(frames.len(), 2);
        let Frame::Close(Some(reason)) = &frames[1] else { panic!("{:?}", frames[1]) };
        assert_eq!(reason.code, CloseCode::Other(4008));
        assert!(reason.description.as_ref().unwrap().len() <= MAX_CLOSE_REASON_BYTES);
        wire.state().input.push_back(Bytes::from_static(b"the client's close, dropped"));
        wire.state().client = Client::Closed;
        assert!(run(&mut pump), "the connection ends when the client has closed too");
    }

    #[test]
    fn a_broken_connection_fails_writers_and_wakes_waiters() {
        let (wire, out, _incoming, mut pump) = open(1 << 16);
        out.text(&"x".repeat(HIGH_WATER + 1)).unwrap();
        let mut waiting = Box::pin(out.drained_to(HIGH_WATER));
        assert!(waiting.as_mut().now_or_never().is_none(), "waits while over the high water mark");
        wire.state().client = Client::Reset;
        assert!(run(&mut pump));
        assert_eq!(waiting.now_or_never(), Some(Err(Closed)));
        assert_eq!(out.text("x"), Err(Closed));
    }

    #[test]
    fn a_broken_connection_ends_the_reader() {
        let (wire, _out, mut reader, mut pump) = open(1024);
        let mut next = Box::pin(reader.recv());
        assert!(next.as_mut().now_or_never().is_none());
        wire.state().client = Client::Reset;
        assert!(run(&mut pump));
        assert!(next.now_or_never().unwrap().is_none(), "the reader ends with the connection");
    }

    #[test]
    fn the_client_closing_ends_the_reader_then_the_connection() {
        let (wire, out, mut reader, mut pump) = open(1024);
        wire.state().client = Client::Closed;
        assert!(!run(&mut pump), "the session still has the connection");
        assert!(reader.recv().now_or_never().unwrap().is_none());
        drop(out);
        assert!(run(&mut pump));
        assert!(wire.state().shut_down);
    }

    #[test]
    fn a_stalled_client_keeps_what_it_has_not_read_and_writers_wait() {
        let (wire, out, _incoming, mut pump) = open(1 << 16);
        wire.state().client = Client::Stalled;
        out.text("first").unwrap();
        assert!(!run(&mut pump));
        out.text(&"x".repeat(HIGH_WATER + 1)).unwrap();
        assert!(!run(&mut pump));
        let mut waiting = Box::pin(out.drained_to(HIGH_WATER));
        assert!(waiting.as_mut().now_or_never().is_none(), "the socket took nothing, so neither did the pump");
        wire.state().client = Client::Reading;
        assert!(!run(&mut pump));
        assert_eq!(waiting.now_or_never(), Some(Ok(())));
        assert_eq!(out.pending(), 0);
        assert_eq!(client_reads(wire.written()).len(), 2);
    }

    #[test]
    fn an_idle_connection_holds_no_buffer() {
        let (wire, out, mut reader, mut pump) = open(1 << 16);
        let mut codec = Codec::new().client_mode();
        let mut bytes = BytesMut::new();
        codec.encode(Message::Text("hello".into()), &mut bytes).unwrap();
        wire.state().input.push_back(bytes.freeze());
        assert!(!run(&mut pump));
        let message = reader.recv().now_or_never().unwrap().unwrap().unwrap();
        assert_eq!(message, Received::Text(Bytes::from_static(b"hello")));
        out.text("world").unwrap();
        assert!(!run(&mut pump));
        assert!(reader.recv().now_or_never().is_none(), "nothing more has arrived");
        let inner = out.shared.inner.borrow();
        assert_eq!((inner.out.capacity(), inner.inbound.capacity(), reader.buf.capacity()), (0, 0, 0));
        assert!(pump.sending.is_empty());
    }

    #[tokio::test]
    async fn serve_reads_what_came_with_the_handshake_and_sends_the_last_frames_before_closing() {
        let mut codec = Codec::new().client_mode();
        let mut early = BytesMut::new();
        codec.encode(Message::Text("early".into()), &mut early).unwrap();
        let wire = Wire::default();
        wire.state().client = Client::Closed;
        let session: Session = Box::new(|out, mut incoming| {
            Box::pin(async move {
                let Some(Ok(Received::Text(text))) = incoming.recv().await else { panic!("no early frame") };
                out.text(std::str::from_utf8(&text).unwrap()).unwrap();
                out.close(CloseReason { code: CloseCode::Normal, description: None }).unwrap();
            })
        });
        tokio::time::timeout(Duration::from_secs(1), serve(wire.clone(), early, session)).await.unwrap();
        let frames = client_reads(wire.written());
        assert_eq!(frames[0], Frame::Text(Bytes::from_static(b"early")));
        assert!(matches!(frames[1], Frame::Close(Some(CloseReason { code: CloseCode::Normal, .. }))));
        assert!(wire.state().shut_down);
    }
}
