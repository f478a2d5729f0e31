//! A response body that keeps things until it has been sent: what its
//! request holds (a share of the budget, a place in flight), its audit row
//! and its access-log line, each told how many bytes went out and dropped
//! when the body is done (sent whole, cut, or dropped with its client).

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;

pin_project_lite::pin_project! {
    /// `body`, keeping `kept` until it is done: a slow reader holds what
    /// its request holds for as long as it reads.
    pub struct KeepUntilSent<B, K> {
        #[pin]
        body: B,
        kept: K,
    }
}

impl<B, K> KeepUntilSent<B, K> {
    pub fn new(body: B, kept: K) -> Self {
        Self { body, kept }
    }
}

/// What a `KeepUntilSent` body keeps: told of each chunk as it goes (the
/// audit and the access log count the bytes), dropped when the body is.
pub trait Kept {
    fn sent(&mut self, _bytes: usize) {}
}

impl<A: Kept, B: Kept> Kept for (A, B) {
    fn sent(&mut self, bytes: usize) {
        self.0.sent(bytes);
        self.1.sent(bytes);
    }
}

impl<B: MessageBody, K: Kept> MessageBody for KeepUntilSent<B, K> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let polled = this.body.poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            this.kept.sent(chunk.len());
        }
        polled
    }
}
