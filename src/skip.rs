//! A middleware that some requests go around: the session and identity
//! middlewares are for cookies, and a proxied request that carries its
//! credentials in `Authorization` never reads one, nor does one whose
//! session is already known (`auth::session::KnownSessions`). Going around
//! them spares it a session state and an identity made (and put in its
//! extensions), a cookie decrypted and a key hashed per request
//! (`docs/performance.md`).

use std::rc::Rc;
use std::task::{Context, Poll};

use actix_service::{Service, Transform};
use actix_web::Error;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use futures_util::future::{Either, LocalBoxFuture};

/// `inner`, but for the requests `skip` picks, which go straight to the
/// service it wraps.
pub struct Unless<T> {
    inner: T,
    skip: fn(&ServiceRequest) -> bool,
}

impl<T> Unless<T> {
    pub fn new(inner: T, skip: fn(&ServiceRequest) -> bool) -> Self {
        Self { inner, skip }
    }
}

/// The wrapped service, shared by the middleware and the way around it.
pub struct Shared<S>(Rc<S>);

impl<S: Service<ServiceRequest>> Service<ServiceRequest> for Shared<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        self.0.call(req)
    }
}

impl<S, T, B> Transform<S, ServiceRequest> for Unless<T>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    T: Transform<Shared<S>, ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    T::Future: 'static,
    T::Transform: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = UnlessService<T::Transform, S>;
    type InitError = T::InitError;
    type Future = LocalBoxFuture<'static, Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let bare = Rc::new(service);
        let wrapped = self.inner.new_transform(Shared(bare.clone()));
        let skip = self.skip;
        Box::pin(async move { Ok(UnlessService { wrapped: wrapped.await?, bare, skip }) })
    }
}

pub struct UnlessService<W, S> {
    wrapped: W,
    bare: Rc<S>,
    skip: fn(&ServiceRequest) -> bool,
}

impl<W, S, B> Service<ServiceRequest> for UnlessService<W, S>
where
    W: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Either<W::Future, S::Future>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The middleware is ready when what it wraps is.
        self.wrapped.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        match (self.skip)(&req) {
            true => Either::Right(self.bare.call(req)),
            false => Either::Left(self.wrapped.call(req)),
        }
    }
}

/// A proxied request with its credentials in `Authorization` (a token, a
/// JWT, HTTP Basic): the proxy authenticates it by that header alone, and
/// never reads or sets a cookie for it. Or one whose session
/// `KnownSessions` recognised: read from the session cache, with nothing
/// for the middlewares to load, extend or end.
pub fn goes_around(req: &ServiceRequest) -> bool {
    use actix_web::HttpMessage;
    req.path().starts_with("/api/proxy/")
        && (req.headers().contains_key(actix_web::http::header::AUTHORIZATION)
            || req.extensions().contains::<crate::auth::session::KnownSession>())
}
