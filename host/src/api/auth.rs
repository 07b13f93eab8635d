//! Authentication and rate limiting: tenant API keys (`Authorization:
//! Bearer esk_...`), the admin key, and `X-RateLimit-*` headers.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::errors::ApiError;
use crate::tenants::Tenant;
use crate::tenants::ratelimit::Decision;

/// The authenticated tenant, in request extensions.
#[derive(Clone, Debug)]
pub struct Authed(pub Tenant);

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn unauthorized(code: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
        .header(axum::http::header::WWW_AUTHENTICATE, "Bearer")
}

fn rate_headers(d: &Decision) -> [(HeaderName, String); 3] {
    [
        (
            HeaderName::from_static("x-ratelimit-limit"),
            d.limit.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            d.remaining.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            d.reset_secs.to_string(),
        ),
    ]
}

/// Authenticates when a key is sent. Unknown keys are 401; a tenant over its
/// rate limit is 429 with `Retry-After`.
async fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Tenant, Decision)>, ApiError> {
    let Some(key) = bearer(headers) else {
        return if headers.contains_key(AUTHORIZATION) {
            Err(unauthorized(
                "invalid_authorization",
                "the Authorization header must be `Bearer <api key>`",
            ))
        } else {
            Ok(None)
        };
    };
    let tenant = st
        .tenants
        .by_key(key.to_owned())
        .await?
        .ok_or_else(|| unauthorized("invalid_api_key", "the API key is not valid"))?;
    let d = st.limiter.check(&tenant.id);
    if !d.allowed {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "rate limit of {} requests per second exceeded; retry in {} s",
                st.config.rate_limit.per_second, d.retry_after_secs
            ),
        )
        .header(RETRY_AFTER, d.retry_after_secs);
        for (n, v) in rate_headers(&d) {
            e = e.header(n, v);
        }
        return Err(e);
    }
    Ok(Some((tenant, d)))
}

async fn run_authed(st: AppState, mut req: Request, next: Next, required: bool) -> Response {
    match authenticate(&st, req.headers()).await {
        Ok(Some((tenant, d))) => {
            // In flight for the plugin host's fairness: a hot tenant's guests pause while
            // another tenant's request waits.
            let _active = st.plugins.host.activity().enter(&tenant.id);
            req.extensions_mut().insert(Authed(tenant));
            let mut resp = next.run(req).await;
            for (n, v) in rate_headers(&d) {
                resp.headers_mut()
                    .insert(n, HeaderValue::from_str(&v).expect("digits"));
            }
            resp
        }
        Ok(None) if !required => next.run(req).await,
        Ok(None) => unauthorized(
            "missing_api_key",
            "send the API key as `Authorization: Bearer <key>`",
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Routes that need a tenant key.
pub async fn require_tenant(State(st): State<AppState>, req: Request, next: Next) -> Response {
    run_authed(st, req, next, true).await
}

/// Routes that also accept other proof (signed file URLs).
pub async fn optional_tenant(State(st): State<AppState>, req: Request, next: Next) -> Response {
    run_authed(st, req, next, false).await
}

/// `/v1/admin/*`: the configured admin key, compared in constant time (as
/// hashes, so length differences leak nothing either).
pub async fn require_admin(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(admin) = st.config.admin_key.as_deref().filter(|k| !k.is_empty()) else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is disabled: set admin_key (EASEL_ADMIN_KEY)",
        )
        .into_response();
    };
    let Some(given) = bearer(req.headers()) else {
        return unauthorized(
            "missing_api_key",
            "send the admin key as `Authorization: Bearer <key>`",
        )
        .into_response();
    };
    let (a, b) = (
        Sha256::digest(admin.as_bytes()),
        Sha256::digest(given.as_bytes()),
    );
    if a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        != 0
    {
        return unauthorized("invalid_admin_key", "the admin key is not valid").into_response();
    }
    next.run(req).await
}
