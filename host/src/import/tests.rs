//! Importer tests against real files: the shared ncnn pair and its
//! safetensors conversion, and the committed tiny PyTorch checkpoints.

use std::collections::BTreeMap;
use std::io::Write;

use half::f16;
use safetensors::{Dtype, SafeTensors};

use super::*;
use crate::testing::{fixtures_dir, shared_dir};

fn by_name(tensors: Vec<ImportedTensor>) -> BTreeMap<String, ImportedTensor> {
    tensors.into_iter().map(|t| (t.name.clone(), t)).collect()
}

#[test]
fn ncnn_pair_matches_reference_safetensors() {
    let models = shared_dir().join("models");
    let got = by_name(
        ncnn::read_ncnn(
            &models.join("ncnn/realesr-animevideov3-x4.param"),
            &models.join("ncnn/realesr-animevideov3-x4.bin"),
        )
        .unwrap(),
    );
    let bytes = std::fs::read(models.join("realesr-animevideov3-x4.safetensors")).unwrap();
    let want = SafeTensors::deserialize(&bytes).unwrap();
    let mut want_names: Vec<String> = want.names().into_iter().map(String::from).collect();
    want_names.sort();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want_names);
    for (name, t) in &got {
        let w = want.tensor(name).unwrap();
        assert_eq!(t.shape, w.shape(), "{name}");
        assert_eq!(w.dtype(), Dtype::F16, "{name}: reference is fp16");
        if t.shape.len() == 4 {
            // Conv weights are fp16 in the .bin: bit-exact.
            assert_eq!(t.dtype, Dtype::F16, "{name}");
            assert_eq!(t.data, w.data(), "{name}");
        } else {
            // Biases and PReLU slopes are raw fp32 in ncnn; the reference
            // rounded them to fp16, so ours must round to exactly those bits.
            assert_eq!(t.dtype, Dtype::F32, "{name}");
            let ours: Vec<u16> = ncnn::f32_bytes_to_f16(&t.data)
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let theirs: Vec<u16> = bytemuck::pod_collect_to_vec::<u8, f16>(w.data())
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(ours, theirs, "{name}");
        }
    }
}

#[test]
fn ncnn_truncated_or_mismatched_bin_is_an_error() {
    let src = shared_dir().join("models/ncnn");
    let dir = tempfile::tempdir().unwrap();
    let param = dir.path().join("m.param");
    std::fs::copy(src.join("realesr-animevideov3-x4.param"), &param).unwrap();
    let bin = std::fs::read(src.join("realesr-animevideov3-x4.bin")).unwrap();
    std::fs::write(dir.path().join("m.bin"), &bin[..bin.len() - 100]).unwrap();
    let err = import(&param, dir.path(), &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ends early"), "{err}");
    assert!(
        !dir.path().join("m.safetensors").exists(),
        "nothing installed on failure"
    );
    std::fs::remove_file(dir.path().join("m.bin")).unwrap();
    let err = import(&param, dir.path(), &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("m.bin"), "{err}");
}

fn assert_matches_expected(got: Vec<ImportedTensor>) {
    let bytes = std::fs::read(fixtures_dir().join("tiny_srvgg.safetensors")).unwrap();
    let want = SafeTensors::deserialize(&bytes).unwrap();
    let got = by_name(got);
    assert_eq!(got.len(), want.len());
    let mut dtypes = std::collections::BTreeSet::new();
    for (name, w) in want.tensors() {
        let t = got.get(&name).unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!((t.dtype, &t.shape[..]), (w.dtype(), w.shape()), "{name}");
        assert_eq!(t.data, w.data(), "{name}: values differ");
        dtypes.insert(format!("{:?}", t.dtype));
    }
    // The fixture exercises all three storage dtypes.
    assert_eq!(dtypes.len(), 3, "{dtypes:?}");
}

#[test]
fn pth_zip_round_trip_matches_pytorch() {
    assert_matches_expected(pth::read_pth(&fixtures_dir().join("tiny_srvgg.pth")).unwrap());
}

#[test]
fn pth_legacy_round_trip_matches_pytorch() {
    assert_matches_expected(pth::read_pth(&fixtures_dir().join("tiny_srvgg_legacy.pth")).unwrap());
}

#[test]
fn pth_bare_state_dict_with_module_prefix() {
    assert_matches_expected(pth::read_pth(&fixtures_dir().join("tiny_srvgg_bare.pth")).unwrap());
}

#[test]
fn pth_import_writes_weights_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ImportOptions {
        name: Some("tiny".into()),
        licence: Some("MIT".into()),
        ..Default::default()
    };
    let done = import(&fixtures_dir().join("tiny_srvgg.pth"), dir.path(), &opts).unwrap();
    assert_eq!(done.entry.name, "tiny");
    assert_eq!(done.tensors, 11);
    let m = done.entry.manifest.clone().unwrap();
    assert_eq!(m.architecture.as_deref(), Some("srvgg_compact"));
    assert_eq!(m.scale, Some(2));
    assert_eq!(m.dtype.as_deref(), Some("bf16+f16+f32"));
    assert_eq!(m.licence.as_deref(), Some("MIT"));
    assert_eq!(m.source.as_deref(), Some("tiny_srvgg.pth"));
    assert_eq!(
        m.sha256,
        Some(sha256_file(&done.entry.weights_path).unwrap())
    );
    assert_matches_expected(read_tensors(&done.entry.weights_path).unwrap());
    // A second import of the same name needs --force.
    let err = import(&fixtures_dir().join("tiny_srvgg.pth"), dir.path(), &opts).unwrap_err();
    assert!(matches!(err, ImportError::Exists { .. }), "{err}");
    import(
        &fixtures_dir().join("tiny_srvgg.pth"),
        dir.path(),
        &ImportOptions {
            force: true,
            ..opts
        },
    )
    .unwrap();
}

/// The fixture's zip with `data.pkl` replaced.
fn pth_with_pickle(pkl: &[u8]) -> tempfile::NamedTempFile {
    let src = std::fs::File::open(fixtures_dir().join("tiny_srvgg.pth")).unwrap();
    let mut zin = zip::ZipArchive::new(src).unwrap();
    let out = tempfile::Builder::new().suffix(".pth").tempfile().unwrap();
    let mut zout = zip::ZipWriter::new(out.reopen().unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zin.len() {
        let mut f = zin.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        zout.start_file(name.as_str(), stored).unwrap();
        if name.ends_with("/data.pkl") {
            zout.write_all(pkl).unwrap();
        } else {
            std::io::copy(&mut f, &mut zout).unwrap();
        }
    }
    zout.finish().unwrap();
    out
}

#[test]
fn pth_with_code_execution_is_refused() {
    // What `torch.save` of an object whose __reduce__ is os.system looks like.
    let evil =
        pth_with_pickle(b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.");
    let err = pth::read_pth(evil.path()).unwrap_err().to_string();
    assert!(
        err.contains("posix.system") && err.contains("not allowed"),
        "{err}"
    );
}

#[test]
fn pth_with_out_of_bounds_view_is_refused() {
    // One tensor of shape (100,) over a storage of 8 floats ('1' is an 8-float storage).
    let pkl = b"\x80\x02}q\x00X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x001X\x03\x00\x00\x00cpuK\x08tQK\x00Kd\x85K\x01\x85\x89}tRs.";
    let evil = pth_with_pickle(pkl);
    let err = pth::read_pth(evil.path()).unwrap_err().to_string();
    assert!(
        err.contains("w: view reaches element 99 of a 8-element storage"),
        "{err}"
    );
}

#[test]
fn truncated_pth_and_wrong_kinds_are_errors() {
    let bytes = std::fs::read(fixtures_dir().join("tiny_srvgg.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = import(&cut, dir.path(), &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cut.pth") && err.contains("zip"), "{err}");
    let legacy = std::fs::read(fixtures_dir().join("tiny_srvgg_legacy.pth")).unwrap();
    std::fs::write(&cut, &legacy[..legacy.len() - 10]).unwrap();
    let err = pth::read_pth(&cut).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "hi").unwrap();
    assert!(matches!(
        import(&txt, dir.path(), &ImportOptions::default()),
        Err(ImportError::UnknownKind { .. })
    ));
    let fake = dir.path().join("fake.safetensors");
    std::fs::write(&fake, "not safetensors").unwrap();
    let out = dir.path().join("models");
    let err = import(&fake, &out, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("fake.safetensors"), "{err}");
    assert!(!out.join("fake.safetensors").exists());
    let err = import(
        &fake,
        &out,
        &ImportOptions {
            name: Some("../x".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Registry(RegistryError::InvalidName { .. })
        ),
        "{err}"
    );
}

#[test]
fn safetensors_import_copies_and_detects() {
    let dir = tempfile::tempdir().unwrap();
    let src = shared_dir().join("models/realesr-animevideov3-x4.safetensors");
    let done = import(&src, dir.path(), &ImportOptions::default()).unwrap();
    assert_eq!(
        std::fs::read(&done.entry.weights_path).unwrap(),
        std::fs::read(&src).unwrap()
    );
    let m = done.entry.manifest.unwrap();
    assert_eq!(
        (m.architecture.as_deref(), m.scale, m.dtype.as_deref()),
        (Some("srvgg_compact"), Some(4), Some("f16"))
    );
}
