"""ONNX Runtime side of the IS-Net benchmark (benches/src/bin/isnet.rs).

Builds ISNetDIS in PyTorch with the module paths of the DIS reference (the
model class of tests/fixtures/gen/rsu_fixtures.py), loads the same weights
our kernels use (../shared/models/isnet-dis.safetensors: BatchNorm already
folded, so each bn_s1 is set to the identity), exports it to ONNX (fp32,
constant folding) and times ONNX Runtime on the CPU at 1024x1024. Checks the
export against the reference mask (shared/fixtures/isnet) first.

    python benches/python/isnet_ort.py [--iters 3] [--threads 0] [--weights F] [--json]
Needs: torch, safetensors, onnx, onnxruntime, pillow (the fixture image is
read with PIL; there is no random-input fallback, so the export check
against the reference mask always runs).
"""

import argparse
import json
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


def build(weights):
    model = UNet(ISNET["cin"], ISNET["enc"], ISNET["dec"], ISNET["stem"], fuse=False)
    sd = {k: v.float() for k, v in load_file(weights).items()}
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
    ap.add_argument("--weights", default=os.path.join(SHARED, "models", "isnet-dis.safetensors"))
    ap.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    a = ap.parse_args()
    model = build(a.weights)
    x = read_input()
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
    default_weights = os.path.join(SHARED, "models", "isnet-dis.safetensors")
    same_weights = os.path.realpath(a.weights) == os.path.realpath(default_weights)
    if same_weights and os.path.exists(ref_path) and x.shape == (1, 3, 1024, 1024):
        ref = np.load(ref_path)
        mae = float(np.abs(y[0, 0] - ref).mean())
        print(f"export check vs shared reference mask: MAE {mae:.2e}")
        # The peer must compute the same mask, or its timing compares different work.
        if mae > 5e-3:
            raise SystemExit(f"the ONNX export disagrees with the reference mask (MAE {mae:.2e} > 5e-3)")
    times = []
    for _ in range(a.iters):
        t = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - t)
    print(f"ORT CPU ({ort.__version__}, threads {a.threads or 'default'}): {np.mean(times):.3f} s/image "
          f"(runs: {', '.join(f'{v:.3f}' for v in times)})")
    if a.json:
        # Read by benches/src/bin/isnet.rs, which runs this script beside our own passes.
        print(json.dumps({"ort_version": ort.__version__, "seconds": float(np.mean(times)), "runs": times}))


if __name__ == "__main__":
    main()
