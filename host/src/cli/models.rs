//! `easel models list|import`: what is installed in the models directory,
//! and bringing safetensors / PyTorch / ncnn weights into it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::import::{self, ImportOptions};
use crate::models::detect;
use crate::models::registry::{self, ModelEntry};
use crate::weights::Weights;

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List installed models with their detected architectures.
    List(ListArgs),
    /// Import a .safetensors, PyTorch .pth or ncnn .param/.bin model.
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON (one object per model, in an array).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The model file: .safetensors, .pth/.pt/.ckpt, or an ncnn .param (or .bin) with its pair beside it.
    pub path: PathBuf,
    /// Model name (default: the file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Licence recorded in the manifest.
    #[arg(long)]
    pub licence: Option<String>,
    /// Source recorded in the manifest (default: the file name).
    #[arg(long)]
    pub source: Option<String>,
    /// Scale recorded in the manifest when the weights cannot tell.
    #[arg(long)]
    pub scale: Option<u32>,
    /// Replace a model of the same name.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: ModelsCommand, models_dir: &Path) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::List(a) => {
            let rows = rows(models_dir)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", table(models_dir, &rows));
            }
            Ok(())
        }
        ModelsCommand::Import(a) => {
            let opts = ImportOptions {
                name: a.name,
                licence: a.licence,
                source: a.source,
                scale: a.scale,
                force: a.force,
            };
            let done = import::import(&a.path, models_dir, &opts).with_context(|| {
                format!(
                    "importing {} into {}",
                    a.path.display(),
                    models_dir.display()
                )
            })?;
            let arch = done
                .arch
                .map(|a| a.to_string())
                .unwrap_or_else(|| "unrecognised architecture".into());
            println!(
                "imported '{}' ({} tensors, {arch}) -> {}",
                done.entry.name,
                done.tensors,
                done.entry.weights_path.display()
            );
            Ok(())
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub name: String,
    /// Detected from the tensors; the manifest's `architecture` otherwise.
    pub architecture: String,
    pub scale: Option<u32>,
    pub bytes: u64,
    pub path: PathBuf,
    pub licence: Option<String>,
}

fn row(e: &ModelEntry) -> anyhow::Result<Row> {
    let weights = Weights::open(&e.weights_path).with_context(|| format!("model '{}'", e.name))?;
    let arch = detect::detect(&weights);
    let manifest = e.manifest.clone().unwrap_or_default();
    let architecture = match (&arch, &manifest.architecture) {
        (Some(a), _) => a.to_string(),
        (None, Some(m)) => format!("{m} (from manifest)"),
        (None, None) => "unknown".into(),
    };
    let bytes = std::fs::metadata(&e.weights_path)
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(Row {
        name: e.name.clone(),
        architecture,
        scale: manifest
            .scale
            .or(arch.as_ref().and_then(detect::ArchInfo::scale)),
        bytes,
        path: e.weights_path.clone(),
        licence: manifest.licence,
    })
}

pub fn rows(models_dir: &Path) -> anyhow::Result<Vec<Row>> {
    registry::list(models_dir)?.iter().map(row).collect()
}

pub fn table(models_dir: &Path, rows: &[Row]) -> String {
    let mut s = String::new();
    if rows.is_empty() {
        let _ = writeln!(
            s,
            "no models in {} (add one with `easel models import <path>`)",
            models_dir.display()
        );
        return s;
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        s,
        "{:w$}  {:>5}  {:>9}  ARCHITECTURE",
        "NAME", "SCALE", "SIZE"
    );
    for r in rows {
        let scale = r
            .scale
            .map(|s| format!("x{s}"))
            .unwrap_or_else(|| "?".into());
        let size = format!("{:.1} MiB", r.bytes as f64 / (1 << 20) as f64);
        let _ = writeln!(
            s,
            "{:w$}  {scale:>5}  {size:>9}  {}",
            r.name, r.architecture
        );
    }
    s
}
