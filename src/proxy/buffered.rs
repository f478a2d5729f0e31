//! Upstream connections that read up to 64 KiB per system call.
//!
//! awc reads a connection 8 KiB at a time, so a 34 MB answer crosses the
//! proxy in some 4,000 reads and writes, each a wake-up of the proxy (the
//! big-read profile in docs/performance.md). This stream fills a buffer of its own
//! with one large read and hands awc its 8 KiB pieces from memory: an
//! eighth of the system calls and wake-ups, for one 64 KiB buffer per
//! upstream connection.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_rt::net::{ActixStream, TcpStream};
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, Connector, ConnectorService};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, Ready};

const CAPACITY: usize = 64 * 1024;

pub struct BufferedStream {
    inner: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl BufferedStream {
    fn new(inner: TcpStream) -> Self {
        Self { inner, buf: Box::default(), start: 0, end: 0 }
    }
}

impl fmt::Debug for BufferedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedStream")
            .field("inner", &self.inner)
            .field("buffered", &(self.end - self.start))
            .finish()
    }
}

impl AsyncRead for BufferedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.start == this.end {
            // A reader that asks for as much as the buffer holds reads directly.
            if out.remaining() >= CAPACITY {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            if this.buf.is_empty() {
                this.buf = vec![0; CAPACITY].into_boxed_slice();
            }
            let mut fill = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut fill))?;
            (this.start, this.end) = (0, fill.filled().len());
        }
        let n = out.remaining().min(this.end - this.start);
        out.put_slice(&this.buf[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for BufferedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl ActixStream for BufferedStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        if self.start < self.end {
            return Poll::Ready(Ok(Ready::READABLE));
        }
        ActixStream::poll_read_ready(&self.inner, cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(&self.inner, cx)
    }
}

/// actix-tls's TCP connector (what awc uses by default), its streams
/// wrapped in a `BufferedStream`.
#[derive(Clone)]
pub struct BufferedConnector(ConnectorService);

impl Default for BufferedConnector {
    fn default() -> Self {
        Self(Connector::default().service())
    }
}

impl Service<ConnectInfo<Uri>> for BufferedConnector {
    type Response = Connection<Uri, BufferedStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<ConnectInfo<Uri>>::poll_ready(&self.0, cx)
    }

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let connecting = self.0.call(req);
        Box::pin(async move {
            let (stream, uri) = connecting.await?.into_parts();
            Ok(Connection::new(uri, BufferedStream::new(stream)))
        })
    }
}
