//! Errors as pages: a readable message with the right status, so an API
//! failure is shown rather than swallowed (the script shows the same
//! message inline for requests it makes itself).

use super::layout;
use crate::service::ServiceError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

/// Why a page or an action failed.
#[derive(Debug)]
pub enum UiError {
    /// No such object (for this tenant).
    NotFound(String),
    /// The request is wrong; the message says how.
    Invalid(String),
    /// The request cannot be read as asked (400); the message says why.
    BadRequest(String),
    /// The signed-in token may not do this.
    Forbidden(String),
    /// A store or the service failed.
    Internal(String),
}

impl UiError {
    fn status(&self) -> StatusCode {
        match self {
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::Forbidden(_) => StatusCode::FORBIDDEN,
            UiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message, for people.
    pub fn message(&self) -> &str {
        match self {
            UiError::NotFound(m)
            | UiError::Invalid(m)
            | UiError::BadRequest(m)
            | UiError::Forbidden(m)
            | UiError::Internal(m) => m,
        }
    }
}

impl From<ServiceError> for UiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::NotFound(m) => UiError::NotFound(m),
            ServiceError::Invalid(m) => UiError::Invalid(m),
            other => UiError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for UiError {
    fn from(err: StoreError) -> Self {
        UiError::Internal(err.to_string())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::UNPROCESSABLE_ENTITY => "Refused",
            StatusCode::BAD_REQUEST => "Bad request",
            _ => "Something went wrong",
        };
        let body = html! {
            h1 { (status.as_u16()) " · " (title) }
            p.error-message role="alert" { (self.message()) }
            p { a href="/" { "Back to the dashboard" } }
        };
        (status, layout::bare(title, body)).into_response()
    }
}

/// What UI handlers return.
pub type UiResult<T> = Result<T, UiError>;
