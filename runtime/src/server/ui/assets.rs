//! The stylesheet, the script and the icon, compiled into the binary and
//! served with a version in their path so browsers may cache them for good.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet's path (versioned by the crate version).
pub const CSS_PATH: &str = concat!("/ui/assets/app-", env!("CARGO_PKG_VERSION"), ".css");
/// The script's path.
pub const JS_PATH: &str = concat!("/ui/assets/app-", env!("CARGO_PKG_VERSION"), ".js");
/// The icon's path.
pub const ICON_PATH: &str = concat!("/ui/assets/icon-", env!("CARGO_PKG_VERSION"), ".svg");

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/icon.svg");

/// Serves one embedded asset.
pub async fn serve(Path(file): Path<String>) -> Response {
    let path = format!("/ui/assets/{file}");
    let (body, kind) = match path.as_str() {
        CSS_PATH => (CSS, "text/css; charset=utf-8"),
        JS_PATH => (JS, "text/javascript; charset=utf-8"),
        ICON_PATH => (ICON, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    // Debug builds serve fresh copies, so editing an asset needs only a rebuild.
    let cache = if cfg!(debug_assertions) { "no-cache" } else { "public, max-age=31536000, immutable" };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, cache)], body).into_response()
}
