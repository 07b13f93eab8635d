//! The credit ledger: one row per change of a tenant's balance, written in the same
//! transaction as the change, so the rows of a tenant always sum to its balance. Tenants
//! created before the ledger existed get an `opening_balance` row, ordered before their
//! other entries, when the database is opened (see [`backfill_opening_balances`]).

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::db::DbError;
use crate::ids;

/// Why a balance changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The credits a tenant was created with.
    Grant,
    /// An operator added or removed credits.
    AdminAdjustment,
    /// A job's price, reserved at submit (kept when it succeeds).
    JobCharge,
    /// A failed or canceled job's reservation, given back.
    JobRefund,
    /// The difference a router's plan costs over what submit reserved.
    PlanCharge,
    /// The difference back, when the plan costs less than submit reserved.
    PlanRefund,
    /// A plugin's `models.run`, charged before it runs.
    PluginModelCharge,
    /// A plugin's `models.run` that failed, given back.
    PluginModelRefund,
    /// What a tenant created before the ledger existed held when its ledger began.
    OpeningBalance,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::AdminAdjustment => "admin_adjustment",
            Self::JobCharge => "job_charge",
            Self::JobRefund => "job_refund",
            Self::PlanCharge => "plan_charge",
            Self::PlanRefund => "plan_refund",
            Self::PluginModelCharge => "plugin_model_charge",
            Self::PluginModelRefund => "plugin_model_refund",
            Self::OpeningBalance => "opening_balance",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Grant,
            Self::AdminAdjustment,
            Self::JobCharge,
            Self::JobRefund,
            Self::PlanCharge,
            Self::PlanRefund,
            Self::PluginModelCharge,
            Self::PluginModelRefund,
            Self::OpeningBalance,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// One balance change to record (see [`record`]).
#[derive(Clone, Debug)]
pub struct Change<'a> {
    pub tenant: &'a str,
    /// Signed: positive credits the tenant, negative debits it.
    pub amount: i64,
    pub reason: Reason,
    pub job_id: Option<&'a str>,
    pub plugin: Option<&'a str>,
    pub task: Option<&'a str>,
}

impl<'a> Change<'a> {
    pub fn new(tenant: &'a str, amount: i64, reason: Reason) -> Self {
        Self {
            tenant,
            amount,
            reason,
            job_id: None,
            plugin: None,
            task: None,
        }
    }

    pub fn job(mut self, id: &'a str, task: &'a str) -> Self {
        self.job_id = Some(id);
        self.task = Some(task);
        self
    }

    pub fn plugin(mut self, plugin: &'a str) -> Self {
        self.plugin = Some(plugin);
        self
    }

    pub fn task(mut self, task: &'a str) -> Self {
        self.task = Some(task);
        self
    }
}

/// One row of the ledger, as `GET /v1/credits/ledger` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub id: String,
    /// Signed: positive credited the tenant, negative debited it.
    pub amount: i64,
    /// The balance right after this change.
    pub balance: i64,
    pub reason: Reason,
    pub job_id: Option<String>,
    pub plugin: Option<String>,
    pub task: Option<String>,
    pub created_at: String,
}

/// Records `c`, which the caller has just applied to the tenant's balance inside the
/// transaction `conn` is in (the balance after it is read from there).
pub fn record(conn: &Connection, c: &Change<'_>) -> rusqlite::Result<()> {
    if c.amount == 0 {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO credit_ledger (id, tenant_id, amount, balance, reason, job_id, plugin, task, created_at) \
         SELECT ?1, id, ?3, credits, ?4, ?5, ?6, ?7, ?8 FROM tenants WHERE id = ?2",
        params![
            ids::new_id("led"),
            c.tenant,
            c.amount,
            c.reason.as_str(),
            c.job_id,
            c.plugin,
            c.task,
            ids::now_ms()
        ],
    )?;
    Ok(())
}

/// Adds `c.amount` to the tenant's balance and records it, in the caller's transaction.
/// A debit applies only when the balance covers it: `Ok(false)` (nothing changed) otherwise.
pub fn apply(conn: &Connection, c: &Change<'_>) -> rusqlite::Result<bool> {
    let n = if c.amount < 0 {
        conn.execute(
            "UPDATE tenants SET credits = credits + ?1 WHERE id = ?2 AND credits >= -?1",
            params![c.amount, c.tenant],
        )?
    } else {
        conn.execute(
            "UPDATE tenants SET credits = credits + ?1 WHERE id = ?2",
            params![c.amount, c.tenant],
        )?
    };
    if n == 0 {
        return Ok(false);
    }
    record(conn, c)?;
    Ok(true)
}

/// Gives every tenant created before the ledger existed an `opening_balance` row, so its
/// entries sum to its balance: the credits it held before its first recorded change. Every
/// tenant created since has a `grant` row (or started at 0), so only tenants without one and
/// whose entries do not sum to their balance qualify; the row takes a `seq` below every
/// existing one so it lists as the tenant's first entry. Idempotent: run at each open.
pub fn backfill_opening_balances(conn: &mut Connection) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let missing: Vec<(String, i64, i64, i64)> = {
        let mut st = tx.prepare(
            "SELECT t.id, t.credits, t.created_at, \
                    COALESCE((SELECT SUM(amount) FROM credit_ledger WHERE tenant_id = t.id), 0), \
                    (SELECT balance - amount FROM credit_ledger WHERE tenant_id = t.id \
                     ORDER BY seq LIMIT 1) \
             FROM tenants t \
             WHERE NOT EXISTS (SELECT 1 FROM credit_ledger WHERE tenant_id = t.id \
                               AND reason IN ('grant', 'opening_balance'))",
        )?;
        let rows = st.query_map([], |r| {
            let credits: i64 = r.get(1)?;
            let sum: i64 = r.get(3)?;
            // Before its first entry, or now when it has none.
            let opening: Option<i64> = r.get(4)?;
            Ok((
                r.get(0)?,
                credits - sum,
                opening.unwrap_or(credits),
                r.get(2)?,
            ))
        })?;
        rows.filter(|r| !matches!(r, Ok((_, 0, _, _))))
            .collect::<rusqlite::Result<_>>()?
    };
    for (tenant, amount, balance, created_at) in &missing {
        tx.execute(
            "INSERT INTO credit_ledger (seq, id, tenant_id, amount, balance, reason, created_at) \
             VALUES ((SELECT COALESCE(MIN(seq), 1) - 1 FROM credit_ledger), ?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                ids::new_id("led"),
                tenant,
                amount,
                balance,
                Reason::OpeningBalance.as_str(),
                created_at
            ],
        )?;
    }
    tx.commit()?;
    Ok(missing.len())
}

/// A page of the ledger.
#[derive(Debug)]
pub struct Page {
    pub entries: Vec<Entry>,
    pub has_more: bool,
}

/// A page of a tenant's ledger, newest first, after the entry `after` (a cursor from the
/// previous page): up to `limit` entries. `None` when `after` is not one of the tenant's
/// entries.
pub fn list(
    conn: &Connection,
    tenant: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Option<Page>, DbError> {
    let before_seq: Option<i64> = match after {
        Some(id) => match conn
            .query_row(
                "SELECT seq FROM credit_ledger WHERE id = ?1 AND tenant_id = ?2",
                params![id, tenant],
                |r| r.get(0),
            )
            .optional()?
        {
            Some(seq) => Some(seq),
            None => return Ok(None),
        },
        None => None,
    };
    let mut st = conn.prepare(
        "SELECT id, amount, balance, reason, job_id, plugin, task, created_at FROM credit_ledger \
         WHERE tenant_id = ?1 AND (?2 IS NULL OR seq < ?2) ORDER BY seq DESC LIMIT ?3",
    )?;
    let mut rows = st
        .query_map(params![tenant, before_seq, limit as i64 + 1], |r| {
            let reason: String = r.get(3)?;
            Ok((
                reason,
                Entry {
                    id: r.get(0)?,
                    amount: r.get(1)?,
                    balance: r.get(2)?,
                    reason: Reason::Grant,
                    job_id: r.get(4)?,
                    plugin: r.get(5)?,
                    task: r.get(6)?,
                    created_at: ids::rfc3339(r.get(7)?),
                },
            ))
        })?
        .map(|row| {
            let (reason, mut e) = row?;
            e.reason = Reason::parse(&reason).ok_or_else(|| {
                DbError::Corrupt(format!("ledger entry {}: reason `{reason}`", e.id))
            })?;
            Ok(e)
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok(Some(Page {
        entries: rows,
        has_more,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn entries_sum_to_the_balance_and_page_newest_first() {
        let db = Db::in_memory().unwrap();
        db.call_sync(|c| {
            let t = crate::tenants::create(c, "acme", 10, 0).unwrap().tenant.id;
            let tx = c.transaction().unwrap();
            assert!(
                apply(
                    &tx,
                    &Change::new(&t, -4, Reason::JobCharge).job("j1", "convert")
                )
                .unwrap()
            );
            assert!(
                !apply(&tx, &Change::new(&t, -7, Reason::PluginModelCharge)).unwrap(),
                "6 left cannot cover 7"
            );
            assert!(
                apply(
                    &tx,
                    &Change::new(&t, 4, Reason::JobRefund).job("j1", "convert")
                )
                .unwrap()
            );
            tx.commit().unwrap();
            crate::tenants::add_credits(c, &t, 5).unwrap();
            let Page {
                entries: page,
                has_more,
            } = list(c, &t, None, 2).unwrap().unwrap();
            assert!(has_more);
            assert_eq!(page[0].reason, Reason::AdminAdjustment);
            assert_eq!((page[0].amount, page[0].balance), (5, 15));
            assert_eq!(page[1].reason, Reason::JobRefund);
            assert_eq!(page[1].job_id.as_deref(), Some("j1"));
            let rest = list(c, &t, Some(&page[1].id), 10).unwrap().unwrap();
            assert!(!rest.has_more);
            let rest = rest.entries;
            let reasons: Vec<Reason> = rest.iter().map(|e| e.reason).collect();
            assert_eq!(reasons, [Reason::JobCharge, Reason::Grant]);
            let sum: i64 = page.iter().chain(&rest).map(|e| e.amount).sum();
            assert_eq!(sum, crate::tenants::get(c, &t).unwrap().credits);
            // Another tenant's cursor is not this tenant's.
            let other = crate::tenants::create(c, "other", 0, 0).unwrap().tenant.id;
            assert!(list(c, &other, Some(&page[1].id), 10).unwrap().is_none());
            let none = list(c, &other, None, 10).unwrap().unwrap();
            assert!(none.entries.is_empty(), "a grant of 0 is no entry");
        });
    }

    #[test]
    fn tenants_from_before_the_ledger_get_an_opening_balance_first() {
        let db = Db::in_memory().unwrap();
        db.call_sync(|c| {
            // As a pre-ledger database left them: 30 credits and no entries; then one
            // charge recorded after the ledger arrived.
            let old = crate::tenants::create(c, "old", 0, 0).unwrap().tenant.id;
            let idle = crate::tenants::create(c, "idle", 0, 0).unwrap().tenant.id;
            c.execute(
                "UPDATE tenants SET credits = 30 WHERE id IN (?1, ?2)",
                params![old, idle],
            )
            .unwrap();
            let new = crate::tenants::create(c, "new", 12, 0).unwrap().tenant.id;
            let tx = c.transaction().unwrap();
            assert!(apply(&tx, &Change::new(&old, -4, Reason::JobCharge)).unwrap());
            tx.commit().unwrap();

            assert_eq!(backfill_opening_balances(c).unwrap(), 2);
            assert_eq!(backfill_opening_balances(c).unwrap(), 0, "idempotent");
            for (t, want) in [(&old, 26), (&idle, 30), (&new, 12)] {
                let e = list(c, t, None, 10).unwrap().unwrap().entries;
                let sum: i64 = e.iter().map(|e| e.amount).sum();
                assert_eq!(sum, want, "{t}");
                assert_eq!(crate::tenants::get(c, t).unwrap().credits, want);
            }
            let e = list(c, &old, None, 10).unwrap().unwrap().entries;
            let reasons: Vec<Reason> = e.iter().map(|e| e.reason).collect();
            assert_eq!(reasons, [Reason::JobCharge, Reason::OpeningBalance]);
            assert_eq!((e[1].amount, e[1].balance), (30, 30));
            // Paging past the opening entry works with its low seq.
            let after = list(c, &old, Some(&e[0].id), 10).unwrap().unwrap();
            assert_eq!(after.entries.len(), 1);
            assert_eq!(after.entries[0].reason, Reason::OpeningBalance);
        });
    }
}
