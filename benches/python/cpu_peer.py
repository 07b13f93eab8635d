#!/usr/bin/env python3
"""CPU peer for the kernel benchmarks: the same ops in PyTorch (if
installed) or NumPy/OpenBLAS, on this machine's CPU.

Reads the cases as JSON lines on stdin ({"op", "dtype", "shape"}), prints one
JSON line per case with median_ms and gflops. Conv2d without PyTorch is
im2col + one BLAS GEMM, which is how CPU frameworks run a 3x3 conv.
"""
import json
import sys
import time

import numpy as np

try:
    import torch  # noqa: F401
    HAVE_TORCH = True
except Exception:  # pragma: no cover - optional
    HAVE_TORCH = False


def median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def matmul_case(n, dtype):
    np_dtype = np.float32 if dtype == "f32" else np.float16
    a = np.random.rand(n, n).astype(np_dtype)
    b = np.random.rand(n, n).astype(np_dtype)
    if HAVE_TORCH:
        import torch
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        return "torch", lambda: torch.matmul(ta, tb)
    if dtype == "f16":
        # NumPy has no f16 BLAS (its f16 matmul is a scalar loop that takes
        # minutes); the CPU's best f16-storage answer is f32 BLAS.
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        return "numpy-f32", lambda: a32 @ b32
    return "numpy", lambda: a @ b


def conv_case(cin, cout, hw, dtype):
    np_dtype = np.float32 if dtype == "f32" else np.float16
    x = np.random.rand(1, cin, hw, hw).astype(np_dtype)
    w = np.random.rand(cout, cin, 3, 3).astype(np_dtype)
    if HAVE_TORCH:
        import torch
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        return "torch", lambda: torch.nn.functional.conv2d(tx, tw, padding=1)

    wm = w.reshape(cout, cin * 9)

    def run():
        xp = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
        cols = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # C,H,W,3,3
        cols = cols.transpose(0, 3, 4, 1, 2).reshape(cin * 9, hw * hw)
        return wm @ cols

    return "numpy-im2col", run


def deform_case(cin, cout, hw, dtype):
    """torchvision's CPU deform_conv2d (DCNv2 with mask and bias), if installed."""
    if not HAVE_TORCH:
        return None
    try:
        import torch
        from torchvision.ops import deform_conv2d
    except ImportError:
        return None
    t = torch.float32 if dtype == "f32" else torch.float16
    x = torch.rand(1, cin, hw, hw, dtype=t)
    off = (torch.rand(1, 18, hw, hw) * 4 - 2).to(t)
    mask = torch.rand(1, 9, hw, hw, dtype=t)
    w = torch.rand(cout, cin, 3, 3, dtype=t)
    b = torch.rand(cout, dtype=t)
    return "torchvision", lambda: deform_conv2d(x, off, w, b, padding=1, mask=mask)


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        op, dtype, shape = case["op"], case["dtype"], case["shape"]
        if op == "matmul":
            n = int(shape.split("x")[0])
            impl, fn = matmul_case(n, dtype)
            flops = 2.0 * n ** 3
            reps = 3 if n >= 4096 else 5
        elif op == "conv2d":
            # "3x3 64->64 128x128"
            _, chans, size = shape.split(" ")
            cin, cout = (int(v) for v in chans.split("->"))
            hw = int(size.split("x")[0])
            impl, fn = conv_case(cin, cout, hw, dtype)
            flops = 2.0 * cin * cout * 9 * hw * hw
            reps = 5
        elif op == "deform_conv2d":
            _, chans, size = shape.split(" ")
            cin, cout = (int(v) for v in chans.split("->"))
            hw = int(size.split("x")[0])
            case_ = deform_case(cin, cout, hw, dtype)
            if case_ is None:
                continue
            impl, fn = case_
            flops = 2.0 * cin * cout * 9 * hw * hw
            reps = 5
        else:
            continue
        ms = median_ms(fn, reps)
        print(json.dumps({"op": op, "dtype": dtype, "shape": shape, "impl": impl,
                          "median_ms": ms, "gflops": flops / (ms * 1e-3) * 1e-9}), flush=True)


if __name__ == "__main__":
    main()
