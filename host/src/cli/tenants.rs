//! `easel tenants ...`: manage tenants directly in the data directory (works
//! while a server runs on it).

use std::path::Path;

use anyhow::Context;

use crate::db::Db;
use crate::tenants;

#[derive(Debug, clap::Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant and print its API key (shown only this once).
    Create(CreateArgs),
    /// List tenants.
    List(ListArgs),
    /// Add credits to a tenant (negative to remove).
    Credits(CreditsArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    pub name: String,
    /// Starting credits.
    #[arg(long, default_value_t = 0)]
    pub credits: i64,
    /// Scheduling class: higher is served first.
    #[arg(long, default_value_t = 0)]
    pub priority: i64,
    /// Print JSON (tenant and key) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CreditsArgs {
    pub id: String,
    #[arg(allow_negative_numbers = true)]
    pub delta: i64,
}

pub fn run(cmd: TenantsCommand, data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let db = Db::open(data_dir)
        .with_context(|| format!("opening the database in {}", data_dir.display()))?;
    db.call_sync(|c| match cmd {
        TenantsCommand::Create(a) => {
            let t = tenants::create(c, &a.name, a.credits, a.priority)
                .context("creating the tenant")?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!(
                    "created tenant {} ({}) with {} credits",
                    t.tenant.name, t.tenant.id, t.tenant.credits
                );
                println!("api key (shown only now; store it): {}", t.api_key);
                println!("webhook signing secret: {}", t.tenant.webhook_secret);
            }
            Ok(())
        }
        TenantsCommand::List(a) => {
            let all = tenants::list(c).context("listing tenants")?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for t in all {
                    let off = if t.disabled { " (disabled)" } else { "" };
                    println!(
                        "{}  {}  credits={} priority={}{off}",
                        t.id, t.name, t.credits, t.priority
                    );
                }
            }
            Ok(())
        }
        TenantsCommand::Credits(a) => {
            let t = tenants::add_credits(c, &a.id, a.delta).context("changing credits")?;
            println!("{} now has {} credits", t.id, t.credits);
            Ok(())
        }
    })
}
