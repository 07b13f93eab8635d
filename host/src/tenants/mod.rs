//! Tenants: who may call the API, their credits and webhook secret.

pub mod keys;
pub mod ledger;
pub mod ratelimit;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::db::{Db, DbError};
use crate::ids;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("tenant name must be 1-100 characters")]
    InvalidName,
    #[error("credits must not go below zero (balance {balance}, change {delta})")]
    NegativeBalance { balance: i64, delta: i64 },
    #[error("no tenant {0}")]
    NotFound(String),
}

impl From<rusqlite::Error> for TenantError {
    fn from(e: rusqlite::Error) -> Self {
        TenantError::Db(e.into())
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    /// Credits available (reservations for queued and running jobs are
    /// already taken out).
    pub credits: i64,
    /// Scheduling class: tenants with a higher value are served first;
    /// within a class tenants take turns.
    pub priority: i64,
    /// Secret that signs this tenant's webhooks (Standard Webhooks `whsec_`).
    pub webhook_secret: String,
    pub created_at: String,
    pub disabled: bool,
}

/// A new tenant and its API key, which is shown only this once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    pub api_key: String,
}

const COLUMNS: &str = "id, name, credits, priority, webhook_secret, created_at, disabled";

fn row_to_tenant(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        name: r.get(1)?,
        credits: r.get(2)?,
        priority: r.get(3)?,
        webhook_secret: r.get(4)?,
        created_at: ids::rfc3339(r.get(5)?),
        disabled: r.get(6)?,
    })
}

pub fn create(
    conn: &Connection,
    name: &str,
    credits: i64,
    priority: i64,
) -> Result<CreatedTenant, TenantError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(TenantError::InvalidName);
    }
    if credits < 0 {
        return Err(TenantError::NegativeBalance {
            balance: 0,
            delta: credits,
        });
    }
    let id = ids::new_id("tnt");
    let key = keys::new_api_key();
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        "INSERT INTO tenants (id, name, key_hash, credits, priority, webhook_secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, name, keys::hash_key(&key), credits, priority, keys::new_webhook_secret(), ids::now_ms()],
    )?;
    ledger::record(
        &tx,
        &ledger::Change::new(&id, credits, ledger::Reason::Grant),
    )?;
    tx.commit()?;
    Ok(CreatedTenant {
        tenant: get(conn, &id)?,
        api_key: key,
    })
}

pub fn get(conn: &Connection, id: &str) -> Result<Tenant, TenantError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tenants WHERE id = ?1"))?
        .query_row([id], row_to_tenant)
        .optional()?
        .ok_or_else(|| TenantError::NotFound(id.to_owned()))
}

/// The enabled tenant owning `key`, if any.
pub fn by_key(conn: &Connection, key: &str) -> Result<Option<Tenant>, TenantError> {
    // Every authenticated request runs this: keep the parsed statement on the connection.
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tenants WHERE key_hash = ?1 AND disabled = 0"
        ))?
        .query_row([keys::hash_key(key)], row_to_tenant)
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<Tenant>, TenantError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM tenants ORDER BY created_at, id"
    ))?;
    let rows = stmt
        .query_map([], row_to_tenant)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Adds `delta` (may be negative) to the balance, with its ledger entry; refuses to go
/// below zero.
pub fn add_credits(conn: &Connection, id: &str, delta: i64) -> Result<Tenant, TenantError> {
    let tx = conn.unchecked_transaction()?;
    let t = get(&tx, id)?;
    let change = ledger::Change::new(id, delta, ledger::Reason::AdminAdjustment);
    if !ledger::apply(&tx, &change)? {
        return Err(TenantError::NegativeBalance {
            balance: t.credits,
            delta,
        });
    }
    tx.commit()?;
    get(conn, id)
}

/// Changes the fields an operator may change.
pub fn update(
    conn: &Connection,
    id: &str,
    priority: Option<i64>,
    disabled: Option<bool>,
) -> Result<Tenant, TenantError> {
    get(conn, id)?;
    if let Some(p) = priority {
        conn.execute(
            "UPDATE tenants SET priority = ?1 WHERE id = ?2",
            params![p, id],
        )?;
    }
    if let Some(d) = disabled {
        conn.execute(
            "UPDATE tenants SET disabled = ?1 WHERE id = ?2",
            params![d, id],
        )?;
    }
    get(conn, id)
}

/// Replaces the API key; the old one stops working at once.
pub fn rotate_key(conn: &Connection, id: &str) -> Result<CreatedTenant, TenantError> {
    get(conn, id)?;
    let key = keys::new_api_key();
    conn.execute(
        "UPDATE tenants SET key_hash = ?1 WHERE id = ?2",
        params![keys::hash_key(&key), id],
    )?;
    Ok(CreatedTenant {
        tenant: get(conn, id)?,
        api_key: key,
    })
}

/// Async access for the API.
#[derive(Clone)]
pub struct Tenants {
    db: Db,
}

impl Tenants {
    pub fn new(db: Db) -> Self {
        Tenants { db }
    }

    pub async fn by_key(&self, key: String) -> Result<Option<Tenant>, TenantError> {
        self.db.call(move |c| by_key(c, &key)).await
    }

    pub async fn get(&self, id: String) -> Result<Tenant, TenantError> {
        self.db.call(move |c| get(c, &id)).await
    }

    pub async fn create(
        &self,
        name: String,
        credits: i64,
        priority: i64,
    ) -> Result<CreatedTenant, TenantError> {
        self.db
            .call(move |c| create(c, &name, credits, priority))
            .await
    }

    pub async fn list(&self) -> Result<Vec<Tenant>, TenantError> {
        self.db.call(|c| list(c)).await
    }

    pub async fn add_credits(&self, id: String, delta: i64) -> Result<Tenant, TenantError> {
        self.db.call(move |c| add_credits(c, &id, delta)).await
    }

    pub async fn update(
        &self,
        id: String,
        priority: Option<i64>,
        disabled: Option<bool>,
    ) -> Result<Tenant, TenantError> {
        self.db
            .call(move |c| update(c, &id, priority, disabled))
            .await
    }

    pub async fn rotate_key(&self, id: String) -> Result<CreatedTenant, TenantError> {
        self.db.call(move |c| rotate_key(c, &id)).await
    }

    /// A page of the tenant's credit ledger (`None`: `after` is not one of its entries).
    pub async fn ledger(
        &self,
        id: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Option<ledger::Page>, TenantError> {
        Ok(self
            .db
            .call(move |c| ledger::list(c, &id, after.as_deref(), limit))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lookup_credit() {
        let db = Db::in_memory().unwrap();
        db.call_sync(|c| {
            let t = create(c, "acme", 10, 0).unwrap();
            assert_eq!(by_key(c, &t.api_key).unwrap().unwrap().id, t.tenant.id);
            assert!(by_key(c, "esk_wrong").unwrap().is_none());
            assert_eq!(add_credits(c, &t.tenant.id, -4).unwrap().credits, 6);
            assert!(matches!(
                add_credits(c, &t.tenant.id, -7),
                Err(TenantError::NegativeBalance { .. })
            ));
            let rotated = rotate_key(c, &t.tenant.id).unwrap();
            assert!(by_key(c, &t.api_key).unwrap().is_none());
            assert!(by_key(c, &rotated.api_key).unwrap().is_some());
            update(c, &t.tenant.id, None, Some(true)).unwrap();
            assert!(by_key(c, &rotated.api_key).unwrap().is_none());
            assert!(matches!(
                create(c, "  ", 0, 0),
                Err(TenantError::InvalidName)
            ));
        });
    }
}
