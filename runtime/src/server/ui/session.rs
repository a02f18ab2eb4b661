//! Signing in: a token typed into the sign-in form starts a server-side
//! session (`service::sessions`); the cookie (HttpOnly, SameSite=Strict)
//! holds only the session's random id, never the token, and the session
//! ends on sign-out, after at most 12 hours, or when its token is revoked.
//! Every request that changes something carries a CSRF token derived from
//! the session id, which another site can neither read nor compute.
//!
//! Where to go after signing in (`next`) must be a path of this site: one
//! `/` then neither `/` nor `\`, with no control characters or spaces
//! (browsers drop tabs and newlines, which would turn `/\t/evil` into
//! `//evil`, another site); anything else is refused with 400.

use super::Ui;
use super::error::UiError;
use super::layout;
use super::words::url_encode;
pub use crate::core::tenant::{Principal, Role};
use crate::service::AuthError;
use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sha2::{Digest, Sha256};

const COOKIE: &str = "sluice_session";
/// The form field (or `X-CSRF-Token` header) every state-changing request carries.
pub const CSRF_FIELD: &str = "_csrf";
const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in request.
#[derive(Clone, Debug)]
pub struct Session {
    /// Who.
    pub principal: Principal,
    /// The CSRF token their forms must carry.
    pub csrf: String,
}

impl Session {
    /// Whether to show buttons that change things.
    pub fn can_write(&self) -> bool {
        self.may(Role::Runner)
    }

    /// Whether the token's role is at least `role` (the API decides; this only hides buttons).
    pub fn may(&self, role: Role) -> bool {
        self.principal.role >= role
    }
}

fn csrf_for(session_id: &str) -> String {
    let digest = Sha256::new().chain_update(b"sluice-ui-csrf\0").chain_update(session_id.as_bytes()).finalize();
    hex::encode(&digest[..16])
}

/// The session id the request's cookie carries.
fn cookie_session_id(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get_all(header::COOKIE);
    for value in cookies.iter().filter_map(|v| v.to_str().ok()) {
        for pair in value.split(';') {
            if let Some((name, id)) = pair.trim().split_once('=')
                && name == COOKIE
                && !id.is_empty()
            {
                return Some(id.to_string());
            }
        }
    }
    None
}

/// The session of a request, if it has a valid one.
fn session_of(ui: &Ui, headers: &HeaderMap) -> Result<Option<Session>, UiError> {
    let Some(id) = cookie_session_id(headers) else { return Ok(None) };
    Ok(ui.dispatch.service.session(&id)?.map(|principal| Session { principal, csrf: csrf_for(&id) }))
}

impl FromRequestParts<Ui> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, Response> {
        match session_of(ui, &parts.headers) {
            Ok(Some(session)) => Ok(session),
            Ok(None) if parts.method == Method::GET && !is_script_request(&parts.headers) => {
                let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                Err(Redirect::to(&format!("/signin?next={}", url_encode(here))).into_response())
            }
            Ok(None) => {
                Err((StatusCode::UNAUTHORIZED, "Not signed in (or the token was revoked): sign in again.")
                    .into_response())
            }
            Err(err) => Err(err.into_response()),
        }
    }
}

fn is_script_request(headers: &HeaderMap) -> bool {
    headers.contains_key("x-requested-with") || headers.get(header::ACCEPT).is_some_and(|a| a == "text/event-stream")
}

/// A signed-in form post whose CSRF token was checked; with the form's other fields.
pub struct SignedForm {
    /// Who.
    pub session: Session,
    /// The submitted fields, in order (the CSRF field removed).
    pub fields: Vec<(String, String)>,
}

impl FromRequest<Ui> for SignedForm {
    type Rejection = Response;

    async fn from_request(request: Request, ui: &Ui) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, ui).await?;
        let header_csrf = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let request = Request::from_parts(parts, body);
        let Form(mut fields) = Form::<Vec<(String, String)>>::from_request(request, ui).await.map_err(|rejection| {
            UiError::Invalid(format!("unreadable form: {}", rejection.body_text())).into_response()
        })?;
        let form_csrf = fields.iter().position(|(k, _)| k == CSRF_FIELD).map(|i| fields.remove(i).1);
        if form_csrf.or(header_csrf).as_deref() != Some(session.csrf.as_str()) {
            return Err(UiError::Forbidden(
                "this form is stale or came from another site (CSRF token missing or wrong); reload the page and try again"
                    .into(),
            )
            .into_response());
        }
        Ok(SignedForm { session, fields })
    }
}

/// A state-changing request: a [`SignedForm`] from a token allowed to write.
pub struct Change {
    /// Who.
    pub session: Session,
    /// The submitted fields, in order (the CSRF field removed).
    pub fields: Vec<(String, String)>,
}

impl FromRequest<Ui> for Change {
    type Rejection = Response;

    async fn from_request(request: Request, ui: &Ui) -> Result<Self, Response> {
        let SignedForm { session, fields } = SignedForm::from_request(request, ui).await?;
        if !session.can_write() {
            return Err(UiError::Forbidden(format!(
                "a {} token can look but not change anything; sign in with a token that may",
                session.principal.role.name()
            ))
            .into_response());
        }
        Ok(Change { session, fields })
    }
}

/// Where to go after signing in.
#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Where to go after signing in: a path of this site, `/` when absent.
/// Refused (with what is wrong) unless it is one `/` followed by neither
/// `/` nor `\\`, with no control character, space or `\\` anywhere: a
/// browser drops tabs and newlines before it reads a URL, so anything
/// looser can turn into `//other.site`.
fn safe_next(next: Option<&str>) -> Result<&str, UiError> {
    let Some(path) = next else { return Ok("/") };
    let refused = |why: &str| {
        Err(UiError::BadRequest(format!(
            "`next` must be a path of this site such as `/runs` ({why}); open /signin without it to go to the dashboard"
        )))
    };
    if path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refused("it holds a control character or a space");
    }
    if path.contains('\\') {
        return refused("it holds a `\\`");
    }
    let mut chars = path.chars();
    if chars.next() != Some('/') {
        return refused("it does not start with `/`");
    }
    if chars.next() == Some('/') {
        return refused("it starts with `//`, which names another site");
    }
    Ok(path)
}

fn signin_form(next: &str, error: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            h1 { "Sign in to Sluice" }
            form.card method="post" action="/signin" {
                input type="hidden" name="next" value=(next);
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus
                    aria-describedby="token-help" aria-invalid=[error.map(|_| "true")];
                @if let Some(error) = error {
                    p.field-error.error-message role="alert" { (error) }
                }
                p #token-help .hint { "The token you use with the CLI (" code { "SLUICE_API_TOKEN" } "). It is not stored in the browser: signing in starts a session of at most 12 hours." }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The sign-in form.
pub async fn signin_page(Query(next): Query<Next>) -> Result<Markup, UiError> {
    Ok(signin_form(safe_next(next.next.as_deref())?, None))
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct SignIn {
    token: String,
    next: Option<String>,
}

/// Checks the token, starts a session and sets its cookie.
pub async fn sign_in(State(ui): State<Ui>, Form(form): Form<SignIn>) -> Response {
    let next = match safe_next(form.next.as_deref()) {
        Ok(next) => next.to_string(),
        Err(err) => return err.into_response(),
    };
    match ui.dispatch.service.start_session(form.token.trim()) {
        Ok(session) => {
            let lifetime = crate::service::SESSION_LIFETIME.num_seconds();
            let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={lifetime}", session.id);
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        Err(AuthError::Store(err)) => UiError::from(err).into_response(),
        Err(_) => (
            StatusCode::UNAUTHORIZED,
            signin_form(&next, Some("That token is not valid here. Check it and try again.")),
        )
            .into_response(),
    }
}

/// Ends the session and forgets its cookie.
pub async fn sign_out(State(ui): State<Ui>, headers: HeaderMap, _form: SignedForm) -> Response {
    if let Some(id) = cookie_session_id(&headers)
        && let Err(err) = ui.dispatch.service.end_session(&id)
    {
        return UiError::from(err).into_response();
    }
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/signin")).into_response()
}
