//! The HTTP API (axum). Handlers are thin: they parse the request, call the
//! job core, tenants or storage, and render the result.

pub mod account;
pub mod admin;
pub mod auth;
pub mod credits;
pub mod errors;
pub mod files;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod pipelines;
pub mod plugins;
pub mod tasks;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, post, put};

use crate::config::Config;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::tenants::Tenants;
use crate::tenants::ratelimit::RateLimiter;
use errors::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub jobs: Arc<Jobs>,
    pub tenants: Tenants,
    pub limiter: Arc<RateLimiter>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub models_dir: PathBuf,
    pub openapi: Arc<serde_json::Value>,
    pub plugins: plugins::Plugins,
}

impl AppState {
    pub fn new(
        jobs: Arc<Jobs>,
        tenants: Tenants,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        models_dir: PathBuf,
        plugins: plugins::Plugins,
    ) -> Self {
        let limiter = Arc::new(RateLimiter::new(
            config.rate_limit.per_second,
            config.rate_limit.burst,
        ));
        let mut st = AppState {
            jobs,
            tenants,
            limiter,
            config,
            metrics,
            models_dir,
            openapi: Arc::new(serde_json::Value::Null),
            plugins,
        };
        st.openapi = Arc::new(openapi::document(&models::task_infos(&st)));
        st
    }
}

pub fn router(st: AppState) -> Router {
    let tenant = Router::new()
        .route("/v1/models", get(models::list))
        .route("/v1/image/{task}", post(tasks::submit))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/v1/jobs/{id}/webhooks", get(jobs::webhooks))
        .route("/v1/files", post(files::upload))
        .route("/v1/account", get(account::get))
        .route("/v1/credits/ledger", get(credits::ledger))
        .route("/v1/plugins", get(plugins::list))
        .route(
            "/v1/plugins/{name}",
            put(plugins::upload)
                .get(plugins::get)
                .delete(plugins::delete),
        )
        .route("/v1/plugins/{name}/logs", get(plugins::logs))
        .route(
            "/v1/plugins/{name}/pin",
            put(plugins::pin).delete(plugins::unpin),
        )
        .route("/v1/pipelines", get(pipelines::list))
        .route(
            "/v1/pipelines/{task}",
            get(pipelines::get)
                .put(pipelines::put)
                .delete(pipelines::delete),
        )
        .route("/v1/x/{plugin}", any(plugins::endpoint))
        .route("/v1/x/{plugin}/{*path}", any(plugins::endpoint))
        .route_layer(from_fn_with_state(st.clone(), auth::require_tenant));
    // Downloads also accept a signed URL instead of a key; delete checks the
    // key itself.
    let file = Router::new()
        .route("/v1/files/{id}", get(files::download).delete(files::delete))
        .route_layer(from_fn_with_state(st.clone(), auth::optional_tenant));
    let admin = Router::new()
        .route("/v1/admin/tenants", post(admin::create).get(admin::list))
        .route(
            "/v1/admin/tenants/{id}",
            get(admin::get).patch(admin::update),
        )
        .route("/v1/admin/tenants/{id}/credits", post(admin::credits))
        .route("/v1/admin/tenants/{id}/rotate-key", post(admin::rotate_key))
        .route_layer(from_fn_with_state(st.clone(), auth::require_admin));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(tenant)
        .merge(file)
        .merge(admin)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(st.config.limits.max_body_bytes))
        .layer(from_fn_with_state(st.clone(), metrics::track))
        .with_state(st)
}
