//! What every page the hub serves carries: the desk's and the public
//! credit page's security headers, in one place.

use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// The pages' Content-Security-Policy: scripts and styles from the hub
/// only, nothing inline, no framing, forms post back to the hub only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn header_layer(
    name: header::HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}

/// `router` with the pages' headers on every answer: the policy above, no
/// MIME sniffing, no framing, no referrer sent on.
pub fn pages<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(header_layer(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_layer(header::REFERRER_POLICY, "no-referrer"))
}

/// `router` answering what must not be kept by any cache: pages behind a
/// login.
pub fn not_stored<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(header_layer(header::CACHE_CONTROL, "no-store"))
}
