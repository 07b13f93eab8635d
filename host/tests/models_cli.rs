//! `easel models list|import` as a user runs them.

use std::process::Command;

use easel_host::testing::{fixtures_dir, shared_dir};

fn easel(models_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_easel"))
        .arg("--models-dir")
        .arg(models_dir)
        .args(args)
        .env_remove("EASEL_MODELS_DIR")
        .output()
        .expect("run easel");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_shows_shared_models_with_detected_architectures() {
    let (ok, out, err) = easel(&shared_dir().join("models"), &["models", "list"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[1].starts_with("isnet-dis") && lines[1].contains("IS-Net (in 3, out 1)"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("realesr-animevideov3-x4")
            && lines[2].contains("x4")
            && lines[2].contains("SRVGGNetCompact (num_feat 64, num_conv 16, x4, PReLU)"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("realesrgan-x4plus")
            && lines[3]
                .contains("RRDBNet (num_feat 64, num_block 23, num_grow_ch 32, in 3, out 3, x4)"),
        "{out}"
    );
    let (ok, json, _) = easel(&shared_dir().join("models"), &["models", "list", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(3));
}

#[test]
fn import_then_list() {
    let dir = tempfile::tempdir().unwrap();
    let pth = fixtures_dir().join("tiny_srvgg.pth");
    let (ok, out, err) = easel(
        dir.path(),
        &[
            "models",
            "import",
            pth.to_str().unwrap(),
            "--name",
            "tiny",
            "--licence",
            "MIT",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "imported 'tiny' (11 tensors, SRVGGNetCompact (num_feat 8, num_conv 2, x2, PReLU))"
        ),
        "{out}"
    );
    let (ok, out, _) = easel(dir.path(), &["models", "list"]);
    assert!(
        ok && out
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("tiny") && l.contains("x2")),
        "{out}"
    );
    let (ok, _, err) = easel(
        dir.path(),
        &["models", "import", pth.to_str().unwrap(), "--name", "tiny"],
    );
    assert!(
        !ok && err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    let (ok, _, err) = easel(&dir.path().join("missing"), &["models", "list"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}
