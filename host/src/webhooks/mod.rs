//! Job webhooks: a durable outbox in the database, delivered by a background
//! worker with Standard Webhooks signatures, retried with exponential backoff
//! until delivered, `max_attempts` or `max_age_secs`. Every attempt is
//! recorded. A message is leased before each attempt, so a crash mid-attempt
//! means it is tried again after restart (at least once).

pub mod sign;
pub mod ssrf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

use crate::config::WebhookConfig;
use crate::db::{Db, DbError};
use crate::ids;
use crate::jobs::model::WebhookEvent;
use crate::metrics::Metrics;

/// Queues one message (inside the caller's transaction when there is one).
pub fn enqueue(
    conn: &Connection,
    job_id: &str,
    tenant_id: &str,
    event: WebhookEvent,
    url: &str,
    data: &serde_json::Value,
) -> rusqlite::Result<String> {
    let id = ids::new_id("msg");
    let now = ids::now_ms();
    let payload = serde_json::json!({
        "type": event.type_name(),
        "timestamp": ids::rfc3339(now),
        "data": data,
    });
    conn.execute(
        "INSERT INTO webhook_messages (id, job_id, tenant_id, event_type, url, payload, state, next_attempt_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
        params![id, job_id, tenant_id, event.type_name(), url, payload.to_string(), now],
    )?;
    Ok(id)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub attempt: u32,
    pub at: String,
    /// HTTP status of the receiver's answer, when there was one.
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The `webhook-id` header (stable across retries).
    pub id: String,
    pub event_type: String,
    pub url: String,
    /// pending | delivered | failed
    pub state: String,
    pub attempts: Vec<Attempt>,
    pub next_attempt_at: Option<String>,
}

struct Due {
    id: String,
    tenant_id: String,
    url: String,
    payload: String,
    attempts: u32,
    created_at: i64,
}

pub struct Webhooks {
    db: Db,
    config: WebhookConfig,
    notify: Notify,
    metrics: Arc<Metrics>,
}

impl Webhooks {
    pub fn new(db: Db, config: WebhookConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Webhooks {
            db,
            config,
            notify: Notify::new(),
            metrics,
        })
    }

    pub fn allow_private(&self) -> bool {
        self.config.allow_private
    }

    /// A message was queued: deliver without waiting for the next poll.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let ms = self
            .config
            .initial_backoff_ms
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
        Duration::from_millis(ms.min(self.config.max_backoff_ms))
    }

    /// Delivers due messages until the process ends.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let limit = Arc::new(Semaphore::new(16));
            loop {
                match this.take_due().await {
                    Ok(due) => {
                        for d in due {
                            let permit = limit
                                .clone()
                                .acquire_owned()
                                .await
                                .expect("semaphore never closes");
                            let me = this.clone();
                            tokio::spawn(async move {
                                me.attempt(d).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::warn!("webhook outbox: {e}"),
                }
                let _ =
                    tokio::time::timeout(Duration::from_millis(250), this.notify.notified()).await;
            }
        })
    }

    /// Due messages, each leased for longer than one attempt can take.
    async fn take_due(&self) -> Result<Vec<Due>, DbError> {
        let lease = self.config.attempt_timeout_ms as i64 + 30_000;
        self.db
            .call(move |c| {
                let now = ids::now_ms();
                let tx = c.transaction()?;
                let due = {
                    let mut st = tx.prepare(
                        "SELECT id, tenant_id, url, payload, attempts, created_at FROM webhook_messages \
                         WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT 32",
                    )?;
                    st.query_map([now], |r| {
                        Ok(Due {
                            id: r.get(0)?,
                            tenant_id: r.get(1)?,
                            url: r.get(2)?,
                            payload: r.get(3)?,
                            attempts: r.get(4)?,
                            created_at: r.get(5)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?
                };
                for d in &due {
                    tx.execute("UPDATE webhook_messages SET next_attempt_at = ?2 WHERE id = ?1", params![d.id, now + lease])?;
                }
                tx.commit()?;
                Ok(due)
            })
            .await
    }

    async fn attempt(&self, d: Due) {
        let started = Instant::now();
        let at = ids::now_ms();
        let result = self.send(&d).await;
        let duration_ms = started.elapsed().as_millis() as i64;
        let (status_code, error) = match &result {
            Ok(code) if (200..300).contains(code) => (Some(*code), None),
            Ok(code) => (Some(*code), Some(format!("receiver answered HTTP {code}"))),
            Err(e) => (None, Some(e.clone())),
        };
        let delivered = error.is_none();
        self.metrics
            .webhook_attempts
            .with_label_values(&[if delivered { "delivered" } else { "failed" }])
            .inc();
        let attempt = d.attempts + 1;
        let next = ids::now_ms() + self.backoff(attempt).as_millis() as i64;
        let give_up = !delivered
            && (attempt >= self.config.max_attempts
                || next > d.created_at + self.config.max_age_secs as i64 * 1000);
        let state = if delivered {
            "delivered"
        } else if give_up {
            "failed"
        } else {
            "pending"
        };
        if give_up {
            tracing::warn!(
                "webhook {} to {}: giving up after {attempt} attempts",
                d.id,
                d.url
            );
        }
        let id = d.id.clone();
        let r = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                tx.execute(
                    "INSERT OR REPLACE INTO webhook_attempts (message_id, attempt, at, status_code, error, duration_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, attempt, at, status_code, error, duration_ms],
                )?;
                tx.execute(
                    "UPDATE webhook_messages SET state = ?2, attempts = ?3, next_attempt_at = ?4 WHERE id = ?1",
                    params![id, state, attempt, next],
                )?;
                tx.commit()?;
                Ok::<_, DbError>(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!("recording webhook attempt: {e}");
        }
    }

    /// One POST; the receiver's status code or why there was none.
    async fn send(&self, d: &Due) -> Result<u16, String> {
        let url = ssrf::parse(&d.url).map_err(|e| e.to_string())?;
        let (host, addrs) = ssrf::resolve(&url, self.config.allow_private)
            .await
            .map_err(|e| e.to_string())?;
        let tenant = d.tenant_id.clone();
        let secret: String = self
            .db
            .call(move |c| {
                c.query_row(
                    "SELECT webhook_secret FROM tenants WHERE id = ?1",
                    [tenant],
                    |r| r.get(0),
                )
                .map_err(DbError::from)
            })
            .await
            .map_err(|e| format!("tenant secret: {e}"))?;
        let ts = ids::now_ms() / 1000;
        let signature =
            sign::sign(&secret, &d.id, ts, d.payload.as_bytes()).map_err(|e| e.to_string())?;
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_millis(self.config.attempt_timeout_ms))
            .user_agent(concat!("easel/", env!("CARGO_PKG_VERSION")));
        if host.parse::<std::net::IpAddr>().is_err() {
            // Connect to the addresses that were checked, not a fresh lookup.
            client = client.resolve_to_addrs(&host, &addrs);
        }
        let client = client.build().map_err(|e| format!("HTTP client: {e}"))?;
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(d.payload.clone())
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        Ok(resp.status().as_u16())
    }

    /// Every message of `job_id` with its attempts (oldest first).
    pub async fn deliveries(&self, job_id: String) -> Result<Vec<Delivery>, DbError> {
        self.db
            .call(move |c| {
                let mut st = c.prepare(
                    "SELECT id, event_type, url, state, next_attempt_at FROM webhook_messages WHERE job_id = ?1 \
                     ORDER BY created_at, rowid",
                )?;
                let msgs = st
                    .query_map([&job_id], |r| {
                        let state: String = r.get(3)?;
                        let next: i64 = r.get(4)?;
                        Ok(Delivery {
                            id: r.get(0)?,
                            event_type: r.get(1)?,
                            url: r.get(2)?,
                            next_attempt_at: (state == "pending").then(|| ids::rfc3339(next)),
                            state,
                            attempts: vec![],
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut st = c.prepare(
                    "SELECT attempt, at, status_code, error, duration_ms FROM webhook_attempts WHERE message_id = ?1 \
                     ORDER BY attempt",
                )?;
                let mut out = Vec::with_capacity(msgs.len());
                for mut m in msgs {
                    m.attempts = st
                        .query_map([&m.id], |r| {
                            Ok(Attempt {
                                attempt: r.get(0)?,
                                at: ids::rfc3339(r.get(1)?),
                                status_code: r.get(2)?,
                                error: r.get(3)?,
                                duration_ms: r.get(4)?,
                            })
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    out.push(m);
                }
                Ok(out)
            })
            .await
    }
}
