//! Tenants' explicit plugin pipelines, one per task: which router plans the task and which
//! processors run, in which order, before it (`preprocess`) and after it (`postprocess`).
//!
//! Stored in SQLite (`pipelines`: tenant, task, config JSON) and read when a job starts, so
//! a change applies to the next job that starts. A task without a config keeps the
//! manifest-based default ([`crate::plugins::PluginHost::hooked`]); a config, even an empty
//! one, replaces it for that task.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::Jobs;
use crate::db::DbError;
use crate::ids;
use crate::plugins::World;

/// Processors allowed in each of a pipeline's lists.
pub const MAX_PROCESSORS: usize = 16;

/// What a tenant configures for one task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// The router plugin that plans the task's steps; `null` runs the task itself.
    pub router: Option<String>,
    /// Processor plugins whose `preprocess` runs on the request, in this order.
    pub preprocess: Vec<String>,
    /// Processor plugins whose `postprocess` runs on the output, in this order.
    pub postprocess: Vec<String>,
}

/// A stored pipeline, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Pipeline {
    pub task: String,
    #[serde(flatten)]
    pub config: PipelineConfig,
    /// RFC 3339.
    pub updated_at: String,
}

/// Why a pipeline was refused. Every variant names the request field at fault.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("no task named `{0}`")]
    UnknownTask(String),
    #[error("no plugin `{plugin}` for this tenant")]
    UnknownPlugin { param: String, plugin: String },
    #[error("`{plugin}` is a {actual} plugin; `{param}` takes a {expected}")]
    WrongWorld {
        param: String,
        plugin: String,
        expected: &'static str,
        actual: &'static str,
    },
    #[error("`{plugin}` is listed twice in `{param}`")]
    Duplicate { param: String, plugin: String },
    #[error("`{param}` lists {count} plugins; at most {MAX_PROCESSORS} are allowed")]
    TooMany { param: String, count: usize },
    #[error("this server runs no plugins")]
    NoPlugins,
    #[error("no pipeline is configured for task `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl PipelineError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownTask(_) => "task_not_found",
            Self::UnknownPlugin { .. } => "plugin_not_found",
            Self::WrongWorld { .. } => "plugin_wrong_world",
            Self::Duplicate { .. } => "duplicate_plugin",
            Self::TooMany { .. } => "too_many_plugins",
            Self::NoPlugins => "plugins_disabled",
            Self::NotFound(_) => "pipeline_not_found",
            Self::Db(_) => "internal_error",
        }
    }

    /// The request field at fault (`task`, `router`, `preprocess[1]`, ...).
    pub fn param(&self) -> Option<String> {
        match self {
            Self::UnknownTask(_) | Self::NotFound(_) => Some("task".into()),
            Self::UnknownPlugin { param, .. }
            | Self::WrongWorld { param, .. }
            | Self::Duplicate { param, .. }
            | Self::TooMany { param, .. } => Some(param.clone()),
            Self::NoPlugins | Self::Db(_) => None,
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            Self::UnknownTask(_) | Self::NotFound(_) => 404,
            Self::NoPlugins => 409,
            Self::Db(_) => 500,
            _ => 422,
        }
    }
}

fn row_to_pipeline(task: String, config: String, updated_at: i64) -> Result<Pipeline, DbError> {
    let config = serde_json::from_str(&config)
        .map_err(|e| DbError::Corrupt(format!("pipeline for `{task}`: {e}")))?;
    Ok(Pipeline {
        task,
        config,
        updated_at: ids::rfc3339(updated_at),
    })
}

impl Jobs {
    /// Checks `config` against the task registry and the tenant's plugins as they are now.
    fn check_pipeline(
        &self,
        tenant: &str,
        task: &str,
        config: &PipelineConfig,
    ) -> Result<(), PipelineError> {
        if self.registry.get(task).is_none() {
            return Err(PipelineError::UnknownTask(task.to_owned()));
        }
        let host = self.plugins.get().ok_or(PipelineError::NoPlugins)?;
        let check = |param: String, name: &str, expected: World| match host.world(tenant, name) {
            None => Err(PipelineError::UnknownPlugin {
                param,
                plugin: name.to_owned(),
            }),
            Some(w) if w != expected => Err(PipelineError::WrongWorld {
                param,
                plugin: name.to_owned(),
                expected: expected.as_str(),
                actual: w.as_str(),
            }),
            Some(_) => Ok(()),
        };
        if let Some(r) = &config.router {
            check("router".into(), r, World::Router)?;
        }
        for (field, list) in [
            ("preprocess", &config.preprocess),
            ("postprocess", &config.postprocess),
        ] {
            if list.len() > MAX_PROCESSORS {
                return Err(PipelineError::TooMany {
                    param: field.into(),
                    count: list.len(),
                });
            }
            for (i, name) in list.iter().enumerate() {
                let param = format!("{field}[{i}]");
                if list[..i].contains(name) {
                    return Err(PipelineError::Duplicate {
                        param,
                        plugin: name.clone(),
                    });
                }
                check(param, name, World::Processor)?;
            }
        }
        Ok(())
    }

    /// Validates and stores (replacing) the tenant's pipeline for `task`.
    pub async fn put_pipeline(
        &self,
        tenant: &str,
        task: &str,
        config: PipelineConfig,
    ) -> Result<Pipeline, PipelineError> {
        self.check_pipeline(tenant, task, &config)?;
        let json = serde_json::to_string(&config).expect("a pipeline serializes");
        let now = ids::now_ms();
        let (t, k) = (tenant.to_owned(), task.to_owned());
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO pipelines (tenant_id, task, config, updated_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![t, k, json, now],
                )
                .map_err(DbError::from)
            })
            .await?;
        Ok(Pipeline {
            task: task.to_owned(),
            config,
            updated_at: ids::rfc3339(now),
        })
    }

    /// The tenant's pipeline for `task`, if one is configured.
    pub async fn pipeline_config(
        &self,
        tenant: &str,
        task: &str,
    ) -> Result<Option<Pipeline>, PipelineError> {
        let (t, k) = (tenant.to_owned(), task.to_owned());
        let row: Option<(String, String, i64)> = self
            .db
            .call(move |c| {
                c.query_row(
                    "SELECT task, config, updated_at FROM pipelines
                     WHERE tenant_id = ?1 AND task = ?2",
                    params![t, k],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(DbError::from)
            })
            .await?;
        row.map(|(task, config, at)| row_to_pipeline(task, config, at))
            .transpose()
            .map_err(Into::into)
    }

    /// Every pipeline the tenant configured, by task name.
    pub async fn pipelines(&self, tenant: &str) -> Result<Vec<Pipeline>, PipelineError> {
        let t = tenant.to_owned();
        let rows: Vec<(String, String, i64)> = self
            .db
            .call(move |c| {
                let mut q = c.prepare(
                    "SELECT task, config, updated_at FROM pipelines
                     WHERE tenant_id = ?1 ORDER BY task",
                )?;
                let rows = q
                    .query_map([t], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, DbError>(rows)
            })
            .await?;
        rows.into_iter()
            .map(|(task, config, at)| row_to_pipeline(task, config, at))
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Removes the tenant's pipeline for `task` (the manifest default applies again).
    pub async fn delete_pipeline(&self, tenant: &str, task: &str) -> Result<(), PipelineError> {
        let (t, k) = (tenant.to_owned(), task.to_owned());
        let n = self
            .db
            .call(move |c| {
                c.execute(
                    "DELETE FROM pipelines WHERE tenant_id = ?1 AND task = ?2",
                    params![t, k],
                )
                .map_err(DbError::from)
            })
            .await?;
        if n == 0 {
            return Err(PipelineError::NotFound(task.to_owned()));
        }
        Ok(())
    }
}
