//! What an admin handler declares instead of checking by hand: `Staff` (an
//! active staff user, or a redirect to the login page), its typed
//! permission check (`staff.require::<ChangeUser>()?`, whose proof the
//! service layer's writes demand), and `CsrfForm<T>` (a form posted with
//! this session's CSRF token, parsed with `serde_html_form`, repeated
//! fields into `Vec`s).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_identity::IdentityExt;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::{AdminError, Message, take_messages};
use crate::auth::perms::{AdminPermission, Granted, Model};
use crate::auth::principal::Principal;
use crate::auth::{AuthState, csrf};

/// What every admin page shows around its content: who, the CSRF token of
/// its forms, and the messages queued for it.
#[derive(Debug, Default)]
pub struct Layout {
    pub user: Option<String>,
    pub csrf: String,
    pub messages: Vec<Message>,
}

/// The active staff user behind the request.
pub struct Staff {
    pub principal: Arc<Principal>,
    pub layout: Layout,
    /// The users, groups and tokens, for the handler's reads and writes.
    pub auth: web::Data<AuthState>,
    /// The request, for the messages queued in its session.
    req: HttpRequest,
}

type LocalFuture<T> = Pin<Box<dyn Future<Output = Result<T, AdminError>>>>;

impl FromRequest for Staff {
    type Error = AdminError;
    type Future = LocalFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { staff(&req).await })
    }
}

/// Any active user signed in with a session (staff or not): the owner of
/// the account pages.
pub struct Member(pub Staff);

impl FromRequest for Member {
    type Error = AdminError;
    type Future = LocalFuture<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { signed_in(&req, false).await.map(Member) })
    }
}

async fn staff(req: &HttpRequest) -> Result<Staff, AdminError> {
    signed_in(req, true).await
}

async fn signed_in(req: &HttpRequest, staff_only: bool) -> Result<Staff, AdminError> {
    let to_login = || {
        let next = req.uri().path_and_query().map_or(super::registry::INDEX, |p| p.as_str());
        let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
        AdminError::Redirect(format!("{}?{query}", super::registry::LOGIN))
    };
    let auth = req
        .app_data::<web::Data<AuthState>>()
        .cloned()
        .ok_or_else(|| AdminError::Internal(anyhow::anyhow!("no AuthState registered")))?;
    let user_id = req
        .get_identity()
        .ok()
        .and_then(|identity| identity.id().ok())
        .and_then(|id| id.parse::<i32>().ok())
        .ok_or_else(to_login)?;
    let principal = auth.principal_of(user_id).await?.ok_or_else(to_login)?;
    if !principal.is_active || (staff_only && !principal.is_staff) {
        return Err(to_login());
    }
    req.extensions_mut().insert(crate::accesslog::Authenticated);
    let layout = Layout {
        user: Some(principal.username.clone()),
        csrf: csrf::token(req)?,
        messages: take_messages(req),
    };
    Ok(Staff { principal, layout, auth, req: req.clone() })
}

impl Staff {
    /// The request this staff user made.
    pub fn request(&self) -> &HttpRequest {
        &self.req
    }

    /// Queues `text` for the next page, as Django's messages framework does.
    pub fn flash(&self, level: &str, text: impl Into<String>) {
        super::flash(&self.req, level, text);
    }

    pub fn can(&self, codename: &str) -> bool {
        self.principal.has_perm(codename)
    }

    pub fn holds<P: AdminPermission>(&self) -> bool {
        self.can(P::CODENAME)
    }

    /// The proof that this user holds `P`, or 403.
    pub fn require<P: AdminPermission>(&self) -> Result<Granted<P>, AdminError> {
        if self.holds::<P>() {
            let actor = crate::auth::guard::Actor::User(self.principal.user_id);
            Ok(Granted::checked(actor, self.auth.default_rate))
        } else {
            Err(AdminError::Forbidden)
        }
    }

    /// Django's rule for read pages: `view_<model>` or `change_<model>`.
    pub fn can_view(&self, model: Model) -> bool {
        model.readers().iter().any(|codename| self.can(codename))
    }

    pub fn require_view(&self, model: Model) -> Result<(), AdminError> {
        if self.can_view(model) { Ok(()) } else { Err(AdminError::Forbidden) }
    }
}

/// A form posted with this session's CSRF token (`csrfmiddlewaretoken`),
/// parsed into `T`: unknown fields ignored, repeated ones into `Vec`s.
pub struct CsrfForm<T>(pub T);

/// As `web::Form`: the form's fields read through it.
impl<T> std::ops::Deref for CsrfForm<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The largest admin form accepted.
const FORM_LIMIT: usize = 1 << 20;

impl<T: DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = AdminError;
    type Future = LocalFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let body = body.await.map_err(|_| AdminError::BadForm)?;
            if body.len() > FORM_LIMIT {
                return Err(AdminError::BadForm);
            }
            if !csrf::form_is_genuine(&req, &body) {
                return Err(AdminError::Csrf);
            }
            serde_html_form::from_bytes(&body).map(CsrfForm).map_err(|_| AdminError::BadForm)
        })
    }
}

/// A form with nothing but its CSRF token (a delete or a revoke button).
#[derive(Debug, Default, Deserialize)]
pub struct NoFields {}

/// An HTML checkbox: sent ("on") when ticked, absent otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkbox(pub bool);

impl<'de> Deserialize<'de> for Checkbox {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Ok(Self(matches!(value.as_str(), "on" | "true" | "1")))
    }
}
