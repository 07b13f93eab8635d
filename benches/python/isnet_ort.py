"""ONNX Runtime side of the IS-Net benchmark (benches/src/bin/isnet.rs).

Builds ISNetDIS in PyTorch with the module paths of the DIS reference (the
model class of tests/fixtures/gen/rsu_fixtures.py), loads the same weights
our kernels use (../shared/models/isnet-dis.safetensors: BatchNorm already
folded, so each bn_s1 is set to the identity), exports it to ONNX (fp32,
constant folding) and times ONNX Runtime on the CPU at 1024x1024. Checks the
export against the reference mask (shared/fixtures/isnet) first.

    python benches/python/isnet_ort.py [--iters 3] [--threads 0]
Needs: torch, safetensors, onnx, onnxruntime, pillow or numpy-only PNG
reading via torch (no extra deps beyond those).
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures", "gen"))
from rsu_fixtures import REBNCONV, UNet  # noqa: E402

SHARED = os.environ.get("EASEL_SHARED_DIR", os.path.join(ROOT, "..", "shared"))

ISNET = dict(
    cin=3,
    stem=64,
    enc=[(32, 64), (32, 128), (64, 256), (128, 512), (256, 512), (256, 512)],
    dec=[(256, 512), (128, 256), (64, 128), (32, 64), (16, 64)],
)


def build():
    model = UNet(ISNET["cin"], ISNET["enc"], ISNET["dec"], ISNET["stem"], fuse=False)
    sd = {k: v.float() for k, v in load_file(os.path.join(SHARED, "models", "isnet-dis.safetensors")).items()}
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, REBNCONV):  # folded checkpoint: BN = identity
                m.bn_s1.weight.fill_(1.0)
                m.bn_s1.bias.zero_()
                m.bn_s1.running_mean.zero_()
                m.bn_s1.running_var.fill_(1.0 - m.bn_s1.eps)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if ".bn_s1." not in k]
    if missing or unexpected:
        raise SystemExit(f"weights do not match the model: missing {missing}, unexpected {unexpected}")
    return model.eval()


def read_input():
    from PIL import Image  # noqa: PLC0415

    img = np.asarray(Image.open(os.path.join(SHARED, "fixtures", "isnet", "input-1024.png")).convert("RGB"))
    x = (img.astype(np.float32) - 128.0) / 256.0
    return x.transpose(2, 0, 1)[None].copy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = ORT default)")
    a = ap.parse_args()
    model = build()
    try:
        x = read_input()
    except ImportError:
        x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 3, 1024, 1024)).astype(np.float32)
    path = os.path.join(tempfile.gettempdir(), "easel-isnet-bench.onnx")
    torch.onnx.export(model, (torch.from_numpy(x),), path, input_names=["input"], output_names=["output"],
                      opset_version=17, do_constant_folding=True, dynamo=False)
    so = ort.SessionOptions()
    if a.threads:
        so.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    t = time.perf_counter()
    y = sess.run(None, {"input": x})[0]
    print(f"ORT warm-up: {time.perf_counter() - t:.3f} s")
    ref_path = os.path.join(SHARED, "fixtures", "isnet", "mask.onnxruntime.f32.npy")
    if os.path.exists(ref_path) and x.shape == (1, 3, 1024, 1024):
        ref = np.load(ref_path)
        print(f"export check vs shared reference mask: MAE {np.abs(y[0, 0] - ref).mean():.2e}")
    times = []
    for _ in range(a.iters):
        t = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - t)
    print(f"ORT CPU ({ort.__version__}, threads {a.threads or 'default'}): {np.mean(times):.3f} s/image "
          f"(runs: {', '.join(f'{v:.3f}' for v in times)})")


if __name__ == "__main__":
    main()
