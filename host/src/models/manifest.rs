//! The optional `<name>.json` manifest beside `<name>.safetensors`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid manifest {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// What is known about a model beyond its tensors. Every field is optional:
/// a bare safetensors file is a valid model. Unknown fields are rejected so a
/// misspelt field is an error, not silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `rrdbnet`, `srvgg_compact`, `isnet`, ... (see `detect::ArchInfo::name`);
    /// overrides nothing detected, but names the family when detection cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Output size / input size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    /// Storage dtype(s) of the tensors, e.g. `f16`, or `f16+f32` when mixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Lower-case hex SHA-256 of the safetensors file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where the weights came from (URL, package, original file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// Input normalisation, for models that need one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalisation: Option<Normalisation>,
    /// Segmentation preprocessing override (`input_size`, `mean`, `std`,
    /// `divisor`), validated and applied by `background::segment` when the
    /// model loads; kept opaque here so the registry accepts the manifests
    /// that loader documents instead of rejecting them as unknown fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<serde_json::Value>,
}

/// Input normalisation applied to pixel values in [0, 1] per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Normalisation {
    /// `(x - mean[c]) / std[c]`.
    MeanStd { mean: Vec<f32>, std: Vec<f32> },
    /// `x * scale + offset`.
    ScaleOffset { scale: f32, offset: f32 },
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.into(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ManifestError::Parse {
            path: path.into(),
            source,
        })
    }

    pub fn to_json(&self) -> String {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_fields() {
        let m = Manifest {
            architecture: Some("isnet".into()),
            scale: Some(1),
            normalisation: Some(Normalisation::MeanStd {
                mean: vec![0.5; 3],
                std: vec![1.0; 3],
            }),
            ..Default::default()
        };
        let back: Manifest = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(back, m);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(&p, r#"{"architecture": "rrdbnet", "scael": 4}"#).unwrap();
        let err = Manifest::load(&p).unwrap_err().to_string();
        assert!(err.contains("m.json") && err.contains("scael"), "{err}");
        std::fs::write(&p, "{}").unwrap();
        assert_eq!(Manifest::load(&p).unwrap(), Manifest::default());
        // The segmenter's documented override must pass the registry too.
        std::fs::write(
            &p,
            r#"{"preprocess": {"input_size": 2048, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "divisor": 255}}"#,
        )
        .unwrap();
        let m = Manifest::load(&p).unwrap();
        assert_eq!(m.preprocess.unwrap()["input_size"], 2048);
    }
}
