//! The WebSocket itself, in one hop each way.
//!
//! A session writes its frames straight into the connection's outgoing buffer
//! ([`Outgoing`]), already framed, and the HTTP/1 dispatcher takes the whole buffer as one
//! chunk of the response body the next time it polls it. So every frame written while the
//! session runs (a batch of events, a resume's replay) leaves in one write, and there is no
//! second queue between the session and the socket. Reading parses frames with actix-http's
//! codec and joins continuation frames ([`Incoming`]).
//!
//! The session and the dispatcher run on the same actix worker thread, so the buffer they
//! share needs no lock.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use actix_codec::Decoder as _;
use actix_http::ws::{self, CloseReason, Codec, Frame, Item, OpCode, Parser, ProtocolError};
use actix_web::body::{BodyStream, MessageBody as _};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::Notify;

/// Past this many unsent bytes a writer waits for the client to read. The hub's queue in
/// front of the session then fills, and a client that stays behind is closed as slow.
pub const HIGH_WATER: usize = 64 * 1024;

/// RFC 6455: a close frame's payload is at most 125 bytes, 2 of them the code.
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// The socket is gone: the client disconnected or the body was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A close frame is written; the body ends once it is taken.
    Closing,
    /// The dispatcher dropped the body: nothing more reaches the client.
    Gone,
}

struct Shared {
    inner: RefCell<Inner>,
    /// Wakes a writer waiting for room or for the end.
    taken: Notify,
}

struct Inner {
    buf: BytesMut,
    state: State,
    /// The dispatcher polling the body, waiting for frames.
    body: Option<Waker>,
    /// The session polling [`Incoming`], which ends when the body is dropped: the h1
    /// payload alone never ends if the connection drops without a close.
    reader: Option<Waker>,
}

/// Upgrades the request: the 101 response to return, the write half and the read half.
pub fn upgrade(
    req: &HttpRequest,
    payload: web::Payload,
    max_frame_bytes: usize,
) -> Result<(HttpResponse, Outgoing, Incoming), actix_web::Error> {
    let mut response = ws::handshake(req.head())?;
    let shared = Rc::new(Shared {
        inner: RefCell::new(Inner { buf: BytesMut::new(), state: State::Open, body: None, reader: None }),
        taken: Notify::new(),
    });
    let body = BodyStream::new(OutgoingBody { shared: shared.clone() }).boxed();
    let response = response.message_body(body)?.into();
    let incoming = Incoming {
        shared: shared.clone(),
        payload: payload.into_inner(),
        buf: BytesMut::new(),
        codec: Codec::new().max_size(max_frame_bytes),
        max_message_bytes: max_frame_bytes,
        continuation: None,
        ended: false,
    };
    Ok((response, Outgoing { shared }, incoming))
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

    /// Appends the close frame; the body ends once the client has been sent it.
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
        Parser::write_close(&mut inner.buf, Some(reason), false);
        inner.state = State::Closing;
        wake(&mut inner.body);
        Ok(())
    }

    fn write(&self, payload: &[u8], op: OpCode) -> Result<(), Closed> {
        let mut inner = self.shared.inner.borrow_mut();
        if inner.state != State::Open {
            return Err(Closed);
        }
        Parser::write_message(&mut inner.buf, payload, op, true, false);
        wake(&mut inner.body);
        Ok(())
    }

    /// Unsent bytes.
    pub fn pending(&self) -> usize {
        self.shared.inner.borrow().buf.len()
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
                if inner.buf.len() <= bytes {
                    return Ok(());
                }
            }
            taken.await;
        }
    }
}

impl Drop for Outgoing {
    /// A writer that leaves without a close frame still ends the body (after what it wrote).
    fn drop(&mut self) {
        let mut inner = self.shared.inner.borrow_mut();
        if inner.state == State::Open {
            inner.state = State::Closing;
        }
        wake(&mut inner.body);
    }
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

/// The response body: each poll takes everything written since the last one.
struct OutgoingBody {
    shared: Rc<Shared>,
}

impl Stream for OutgoingBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut inner = self.shared.inner.borrow_mut();
        if !inner.buf.is_empty() {
            // Taken whole, so an idle connection holds no buffer and a burst's does not stay.
            let chunk = std::mem::take(&mut inner.buf).freeze();
            drop(inner);
            self.shared.taken.notify_one();
            return Poll::Ready(Some(Ok(chunk)));
        }
        if inner.state != State::Open {
            return Poll::Ready(None);
        }
        match &mut inner.body {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for OutgoingBody {
    fn drop(&mut self) {
        let mut inner = self.shared.inner.borrow_mut();
        inner.state = State::Gone;
        inner.buf = BytesMut::new();
        wake(&mut inner.reader);
        drop(inner);
        self.shared.taken.notify_one();
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
    payload: actix_http::Payload,
    buf: BytesMut,
    codec: Codec,
    max_message_bytes: usize,
    /// A fragmented message being joined: whether it is text, and its parts so far.
    continuation: Option<(bool, BytesMut)>,
    ended: bool,
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
            if self.ended {
                return Poll::Ready(None);
            }
            {
                let mut inner = self.shared.inner.borrow_mut();
                if inner.state == State::Gone {
                    return Poll::Ready(None);
                }
                match &mut inner.reader {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
            }
            match Pin::new(&mut self.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    if self.buf.is_empty() {
                        self.buf = BytesMut::from(bytes);
                    } else {
                        self.buf.extend_from_slice(&bytes);
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(ProtocolError::Io(std::io::Error::other(error)))));
                }
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => return Poll::Pending,
            }
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
    use actix_codec::Encoder as _;
    use actix_http::ws::{CloseCode, Message};
    use futures_util::{FutureExt as _, StreamExt as _};
    use proptest::prelude::*;

    use super::*;

    fn shared() -> Rc<Shared> {
        Rc::new(Shared {
            inner: RefCell::new(Inner { buf: BytesMut::new(), state: State::Open, body: None, reader: None }),
            taken: Notify::new(),
        })
    }

    fn pair() -> (Outgoing, OutgoingBody) {
        let shared = shared();
        (Outgoing { shared: shared.clone() }, OutgoingBody { shared })
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

    /// A reader of `chunks`, as if they arrived one by one.
    fn incoming(chunks: Vec<Bytes>, max: usize) -> Incoming {
        let chunks = futures_util::stream::iter(chunks.into_iter().map(Ok));
        Incoming {
            shared: shared(),
            payload: actix_http::Payload::Stream { payload: Box::pin(chunks) },
            buf: BytesMut::new(),
            codec: Codec::new().max_size(max),
            max_message_bytes: max,
            continuation: None,
            ended: false,
        }
    }

    proptest! {
        /// Whatever frames are written before the body is polled leave as one chunk, and
        /// the client reads them back in order, each whole.
        #[test]
        fn frames_written_together_leave_in_one_chunk(texts in prop::collection::vec(".{0,300}", 1..20)) {
            let (out, mut body) = pair();
            for text in &texts {
                out.text(text).unwrap();
            }
            let chunk = body.next().now_or_never().unwrap().unwrap().unwrap();
            prop_assert!(body.next().now_or_never().is_none(), "one chunk holds every frame");
            let frames = client_reads(BytesMut::from(chunk));
            let read: Vec<String> = frames
                .into_iter()
                .map(|frame| match frame {
                    Frame::Text(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            prop_assert_eq!(read, texts);
        }

        /// A message cut into frames and the frames cut into chunks anywhere reads back as
        /// the message.
        #[test]
        fn fragmented_messages_are_joined(text in ".{1,400}", parts in 1usize..5, cut in 1usize..50) {
            let mut codec = Codec::new().client_mode();
            let mut wire = BytesMut::new();
            let bytes = Bytes::from(text.clone().into_bytes());
            let step = bytes.len().div_ceil(parts).max(1);
            let pieces: Vec<Bytes> = bytes.chunks(step).map(Bytes::copy_from_slice).collect();
            if pieces.len() == 1 {
                codec.encode(Message::Text(text.clone().into()), &mut wire).unwrap();
            } else {
                for (i, piece) in pieces.iter().enumerate() {
                    let item = match i {
                        0 => Item::FirstText(piece.clone()),
                        i if i == pieces.len() - 1 => Item::Last(piece.clone()),
                        _ => Item::Continue(piece.clone()),
                    };
                    codec.encode(Message::Continuation(item), &mut wire).unwrap();
                }
            }
            codec.encode(Message::Ping(Bytes::from_static(b"p")), &mut wire).unwrap();
            let chunks: Vec<Bytes> = wire.chunks(cut).map(Bytes::copy_from_slice).collect();
            let mut reader = incoming(chunks, 1 << 16);
            let first = reader.recv().now_or_never().unwrap().unwrap().unwrap();
            prop_assert_eq!(first, Received::Text(Bytes::from(text.into_bytes())));
            let second = reader.recv().now_or_never().unwrap().unwrap().unwrap();
            prop_assert_eq!(second, Received::Ping(Bytes::from_static(b"p")));
        }
    }

    #[test]
    fn a_joined_message_over_the_limit_overflows() {
        let mut codec = Codec::new().client_mode();
        let mut wire = BytesMut::new();
        codec.encode(Message::Continuation(Item::FirstText(Bytes::from(vec![b'a'; 60]))), &mut wire).unwrap();
        codec.encode(Message::Continuation(Item::Last(Bytes::from(vec![b'a'; 60]))), &mut wire).unwrap();
        let mut reader = incoming(vec![wire.freeze()], 100);
        let error = reader.recv().now_or_never().unwrap().unwrap().unwrap_err();
        assert!(matches!(error, ProtocolError::Overflow), "{error:?}");
    }

    #[test]
    fn close_ends_the_body_after_the_frame_and_refuses_more() {
        let (out, mut body) = pair();
        out.text("last").unwrap();
        let long = "é".repeat(100);
        out.close(CloseReason { code: CloseCode::Other(4008), description: Some(long) }).unwrap();
        assert_eq!(out.text("after"), Err(Closed));
        let chunk = body.next().now_or_never().unwrap().unwrap().unwrap();
        let frames = client_reads(BytesMut::from(chunk));
        assert_eq!(frames.len(), 2);
        let Frame::Close(Some(reason)) = &frames[1] else { panic!("{:?}", frames[1]) };
        assert_eq!(reason.code, CloseCode::Other(4008));
        assert!(reason.description.as_ref().unwrap().len() <= MAX_CLOSE_REASON_BYTES);
        assert!(body.next().now_or_never().unwrap().is_none(), "the body ends after the close");
    }

    #[test]
    fn a_dropped_body_fails_writers_and_wakes_waiters() {
        let (out, body) = pair();
        out.text(&"x".repeat(HIGH_WATER + 1)).unwrap();
        let mut waiting = Box::pin(out.drained_to(HIGH_WATER));
        assert!(waiting.as_mut().now_or_never().is_none(), "waits while over the high water mark");
        drop(body);
        assert_eq!(waiting.now_or_never(), Some(Err(Closed)));
        assert_eq!(out.text("x"), Err(Closed));
    }

    #[test]
    fn a_dropped_body_ends_a_reader_whose_payload_never_ends() {
        let (out, body) = pair();
        let mut reader = Incoming {
            shared: out.shared.clone(),
            payload: actix_http::Payload::Stream { payload: Box::pin(futures_util::stream::pending()) },
            buf: BytesMut::new(),
            codec: Codec::new(),
            max_message_bytes: 1024,
            continuation: None,
            ended: false,
        };
        let mut next = Box::pin(reader.recv());
        assert!(next.as_mut().now_or_never().is_none());
        drop(body);
        assert!(next.now_or_never().unwrap().is_none(), "the reader ends with the connection");
    }

    #[test]
    fn taking_the_buffer_wakes_a_waiting_writer() {
        let (out, mut body) = pair();
        out.text(&"x".repeat(HIGH_WATER + 1)).unwrap();
        let mut waiting = Box::pin(out.drained_to(HIGH_WATER));
        assert!(waiting.as_mut().now_or_never().is_none());
        assert!(body.next().now_or_never().is_some());
        assert_eq!(waiting.now_or_never(), Some(Ok(())));
        assert_eq!(out.pending(), 0);
    }
}
