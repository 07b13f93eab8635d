//! Assembles the server from its parts (database, blob store, tenants, task
//! registry, job core, webhooks, metrics, HTTP router) and runs it until
//! SIGTERM/Ctrl-C, then drains running jobs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::plugins::Plugins;
use crate::api::{self, AppState};
use crate::config::Config;
use crate::db::Db;
use crate::jobs::view::Urls;
use crate::jobs::{Jobs, JobsDeps, PluginModels};
use crate::metrics::Metrics;
use crate::plugins::{DbKv, PluginHost, PluginHostConfig, PluginStore};
use crate::storage::files::Files;
use crate::storage::signing::{self, UrlSigner};
use crate::tasks::{ModelCache, Registry};
use crate::tenants::Tenants;
use crate::webhooks::Webhooks;

/// Every long-lived part, ready to serve.
pub struct Server {
    pub state: AppState,
    pub router: axum::Router,
}

/// Opens the data directory and builds the server (jobs not started yet).
pub async fn build(config: Config, data_dir: &Path, models_dir: &Path) -> anyhow::Result<Server> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let db = Db::open(data_dir)
        .with_context(|| format!("opening the database in {}", data_dir.display()))?;
    let blobs =
        crate::storage::open(&config.storage, data_dir).context("opening the blob store")?;
    let secret =
        signing::load_or_create_secret(config.storage.url_signing_secret.as_deref(), data_dir)
            .context("loading the URL signing secret")?;
    let urls = Urls::new(
        UrlSigner::new(secret, config.storage.url_ttl_secs),
        config.public_url.as_deref(),
    );
    let metrics = Arc::new(Metrics::new());
    let webhooks = Webhooks::new(db.clone(), config.webhooks.clone(), metrics.clone());
    let gpu = if config.gpu.enabled {
        tokio::task::spawn_blocking(|| easel_kernels::Gpu::shared().map_err(|e| e.to_string()))
            .await
            .context("opening the GPU")?
    } else {
        Err("the GPU is disabled by configuration (gpu.enabled = false)".to_owned())
    };
    match &gpu {
        Ok(g) => tracing::info!("GPU: {}", g.info().name),
        Err(e) => tracing::warn!("no GPU: {e}; GPU tasks will fail, CPU tasks run"),
    }
    let files = Files {
        db: db.clone(),
        blobs,
        retention_secs: config.storage.retention_secs,
    };
    let jobs = Jobs::new(JobsDeps {
        db: db.clone(),
        files,
        registry: Registry::builtin(config.debug_tasks, config.credits.clone(), models_dir),
        webhooks,
        metrics: metrics.clone(),
        gpu,
        models: Arc::new(ModelCache::new(config.gpu.model_memory_budget_bytes)),
        limits: config.limits.clone(),
        config: config.jobs.clone(),
        urls,
    });
    let runner = Arc::new(PluginModels::new(&jobs));
    let plugins = open_plugins(&config, &db, data_dir, runner).await?;
    jobs.set_plugins(plugins.host.clone());
    let state = AppState::new(
        jobs,
        Tenants::new(db),
        Arc::new(config),
        metrics,
        models_dir.to_owned(),
        plugins,
    );
    let router = api::router(state.clone());
    Ok(Server { state, router })
}

/// Starts the plugin host (its `kv` in the database, its `models` through the job core)
/// and reloads the persisted plugins (from the compile cache when the engine is unchanged).
async fn open_plugins(
    config: &Config,
    db: &Db,
    data_dir: &Path,
    models: Arc<PluginModels>,
) -> anyhow::Result<Plugins> {
    let mut pcfg = PluginHostConfig::new(data_dir);
    pcfg.max_component_bytes = config.plugins.max_component_bytes;
    pcfg.compile_timeout = Duration::from_secs(config.plugins.compile_timeout_secs);
    pcfg.caps = config.plugins.caps();
    if let Some(dir) = &config.plugins.cache_dir {
        pcfg.cache_dir = dir.clone();
    }
    let host = PluginHost::with_parts(pcfg, Arc::new(DbKv::new(db.clone())), models)
        .context("starting the plugin host")?;
    // Before the plugins load: the tenants they create take these policies.
    host.set_default_policy(config.plugins.default_policy());
    for (tenant, policy) in config.plugins.tenant_policies() {
        host.set_policy(&tenant, policy);
    }
    let store = PluginStore::new(db.clone(), data_dir);
    let restored = store
        .load_into(&host)
        .await
        .context("reloading stored plugins")?;
    for f in &restored.failed {
        tracing::error!("stored plugin not loaded: {f}");
    }
    if restored.loaded > 0 {
        tracing::info!("plugins: {} versions reloaded", restored.loaded);
    }
    Ok(Plugins { host, store })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub async fn serve(config: Config, data_dir: &Path, models_dir: &Path) -> anyhow::Result<()> {
    let listen = config.listen.clone();
    let grace = Duration::from_secs(config.jobs.shutdown_grace_secs);
    let sweep = Duration::from_secs(config.storage.sweep_interval_secs.max(1));
    let server = build(config, data_dir, models_dir).await?;
    let st = server.state.clone();
    let rec = st.jobs.start().await.context("recovering jobs")?;
    if rec != Default::default() {
        tracing::warn!(
            "recovered jobs: {} interrupted and queued again, {} failed, {} queued",
            rec.requeued,
            rec.failed,
            rec.queued
        );
    }
    st.jobs.webhooks.spawn();
    st.jobs.files.clone().spawn_sweeper(sweep);

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!("listening on http://{addr}");
    eprintln!("easel listening on http://{addr}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http = tokio::spawn(async move {
        let mut rx = stop_rx;
        axum::serve(listener, server.router)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
    });
    tokio::select! {
        r = &mut http => return Ok(r.context("HTTP server task")??),
        _ = shutdown_signal() => {}
    }
    eprintln!(
        "easel: shutting down; draining running jobs (up to {} s)",
        grace.as_secs()
    );
    let _ = stop_tx.send(true);
    if !st.jobs.drain(grace).await {
        eprintln!(
            "easel: jobs still running after the grace period; they will be recovered at the next start"
        );
    }
    // Open streams (SSE of queued jobs) would hold the HTTP server forever.
    if tokio::time::timeout(Duration::from_secs(5), &mut http)
        .await
        .is_err()
    {
        http.abort();
    }
    eprintln!("easel: stopped");
    Ok(())
}
