//! SQL for job records. Every state change is one conditional UPDATE (on the
//! expected current status) inside a transaction with its credit movement,
//! so concurrent cancel/finish/recovery can never both win.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::model::*;
use crate::db::DbError;
use crate::tasks::Params;
use crate::tenants::ledger;

pub(crate) const COLUMNS: &str = "seq, id, tenant_id, task, status, priority, params, inputs, outputs, error_code, \
     error_message, progress, logs, attempts, credits, credits_state, idempotency_key, request_hash, webhook_url, \
     webhook_events, created_at, started_at, finished_at, plugin_steps";

fn json_col<T: serde::de::DeserializeOwned>(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(crate) fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let status: String = r.get(4)?;
    let code: Option<String> = r.get(9)?;
    let progress: Option<String> = r.get(11)?;
    let credits_state: String = r.get(15)?;
    Ok(Job {
        seq: r.get(0)?,
        id: r.get(1)?,
        tenant_id: r.get(2)?,
        task: r.get(3)?,
        status: JobStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("bad status {status}").into(),
            )
        })?,
        priority: r.get(5)?,
        params: json_col::<Params>(r, 6)?,
        inputs: json_col(r, 7)?,
        outputs: json_col(r, 8)?,
        error: code.map(|code| JobFailure {
            code,
            message: r
                .get::<_, Option<String>>(10)
                .ok()
                .flatten()
                .unwrap_or_default(),
        }),
        progress: progress.and_then(|p| serde_json::from_str(&p).ok()),
        logs: r.get(12)?,
        attempts: r.get(13)?,
        credits: r.get(14)?,
        credits_state: CreditsState::parse(&credits_state),
        idempotency_key: r.get(16)?,
        request_hash: r.get(17)?,
        webhook_url: r.get(18)?,
        webhook_events: json_col(r, 19)?,
        created_at: r.get(20)?,
        started_at: r.get(21)?,
        finished_at: r.get(22)?,
        plugin_steps: json_col(r, 23)?,
    })
}

pub fn insert(tx: &Transaction<'_>, j: &Job) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO jobs (id, tenant_id, task, status, priority, params, inputs, outputs, credits, credits_state, \
         idempotency_key, request_hash, webhook_url, webhook_events, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            j.id,
            j.tenant_id,
            j.task,
            j.status.as_str(),
            j.priority,
            js(&j.params),
            js(&j.inputs),
            js(&j.outputs),
            j.credits,
            j.credits_state.as_str(),
            j.idempotency_key,
            j.request_hash,
            j.webhook_url,
            js(&j.webhook_events),
            j.created_at
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

fn js<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("job fields serialize")
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Job>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
            [id],
            row_to_job,
        )
        .optional()?)
}

pub fn by_idempotency_key(
    conn: &Connection,
    tenant: &str,
    key: &str,
) -> Result<Option<Job>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM jobs WHERE tenant_id = ?1 AND idempotency_key = ?2"),
            [tenant, key],
            row_to_job,
        )
        .optional()?)
}

/// A page of `tenant`'s jobs, newest first, strictly older than `before_seq`.
pub fn list(
    conn: &Connection,
    tenant: &str,
    status: Option<JobStatus>,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Vec<Job>, DbError> {
    let mut st = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE tenant_id = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR seq < ?3) \
         ORDER BY seq DESC LIMIT ?4"
    ))?;
    let rows = st
        .query_map(
            params![tenant, status.map(|s| s.as_str()), before_seq, limit],
            row_to_job,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// queued → running; false if the job is no longer queued (canceled).
pub fn mark_running(conn: &Connection, id: &str, now: i64) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?2, progress = NULL \
         WHERE id = ?1 AND status = 'queued'",
        params![id, now],
    )?;
    Ok(n == 1)
}

pub fn save_progress(
    conn: &Connection,
    id: &str,
    progress: &str,
    logs: &str,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE jobs SET progress = ?2, logs = ?3 WHERE id = ?1 AND status = 'running'",
        params![id, progress, logs],
    )?;
    Ok(())
}

/// The end of a job: `from` → `to` with the credit movement that goes with
/// it, in one transaction. Returns false (and changes nothing) when the job
/// was not in `from`.
pub fn finish(
    tx: &Transaction<'_>,
    id: &str,
    from: JobStatus,
    to: JobStatus,
    outputs: &[JobOutput],
    error: Option<&JobFailure>,
    logs: Option<&str>,
    now: i64,
) -> Result<bool, DbError> {
    let job = match get(tx, id)? {
        Some(j) if j.status == from => j,
        _ => return Ok(false),
    };
    let credits_state = if to == JobStatus::Succeeded {
        CreditsState::Charged
    } else {
        CreditsState::Refunded
    };
    let progress = if to == JobStatus::Succeeded {
        Some(
            serde_json::to_string(&crate::tasks::Progress {
                fraction: 1.0,
                ..Default::default()
            })
            .expect("serializes"),
        )
    } else {
        job.progress
            .as_ref()
            .map(|p| serde_json::to_string(p).expect("serializes"))
    };
    tx.execute(
        "UPDATE jobs SET status = ?2, outputs = ?3, error_code = ?4, error_message = ?5, credits_state = ?6, \
         finished_at = ?7, progress = ?8, logs = COALESCE(?9, logs) WHERE id = ?1",
        params![
            id,
            to.as_str(),
            serde_json::to_string(outputs).expect("serializes"),
            error.map(|e| e.code.as_str()),
            error.map(|e| e.message.as_str()),
            credits_state.as_str(),
            now,
            progress,
            logs
        ],
    )?;
    if credits_state == CreditsState::Refunded
        && job.credits_state == CreditsState::Reserved
        && job.credits > 0
    {
        let refund = ledger::Change::new(&job.tenant_id, job.credits, ledger::Reason::JobRefund)
            .job(&job.id, &job.task);
        ledger::apply(tx, &refund)?;
    }
    Ok(true)
}

/// Jobs in `status`, oldest first, with their tenant's scheduling class.
pub fn with_status(conn: &Connection, status: JobStatus) -> Result<Vec<(Job, i64)>, DbError> {
    // The tenant's priority follows the job's columns.
    let priority_col = COLUMNS.split(", ").count();
    let cols: String = COLUMNS
        .split(", ")
        .map(|c| format!("j.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut st = conn.prepare(&format!(
        "SELECT {cols}, COALESCE(t.priority, 0) FROM jobs j LEFT JOIN tenants t ON t.id = j.tenant_id \
         WHERE j.status = ?1 ORDER BY j.seq"
    ))?;
    let rows = st
        .query_map([status.as_str()], |r| {
            Ok((row_to_job(r)?, r.get::<_, i64>(priority_col)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Puts an interrupted running job back in the queue, noting why in its log.
pub fn requeue_interrupted(conn: &Connection, id: &str, note: &str) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE jobs SET status = 'queued', progress = NULL, logs = logs || ?2 WHERE id = ?1 AND status = 'running'",
        params![id, note],
    )?;
    Ok(n == 1)
}
