#!/usr/bin/env bash
# Writes a few small valid inputs per fuzz target into fuzz/seeds/TARGET/ (committed; libFuzzer
# mutates them). Needs target/release/ebm (cargo build --release) and python3. Run from the
# repository root: bash fuzz/make-seeds.sh
set -euo pipefail
EBM=${EBM:-target/release/ebm}
S=fuzz/seeds
rm -rf "$S" && mkdir -p "$S"/{cifar,svhn,npy,image,decode_cache,manifest,safetensors,config}
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT

python3 - "$S" "$work" <<'PY'
import struct, sys, zlib
S, work = sys.argv[1], sys.argv[2]
px = bytes((i * 7) % 256 for i in range(3072))
open(f"{S}/cifar/cifar10-2.bin", "wb").write(bytes([3]) + px + bytes([9]) + px)
open(f"{S}/cifar/cifar100-1.bin", "wb").write(bytes([19, 99]) + px)

def npy(path, descr, shape, data):
    shape_text = f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(map(str, shape)) + ")"
    h = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}"
    h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data)
def mat_v5(path, arrays):
    # MATLAB v5, uncompressed (libFuzzer mutates its fields directly): arrays of (name, dims, class, mi, data).
    def sub(ty, body):
        return struct.pack("<II", ty, len(body)) + body + bytes(-len(body) % 8)
    out = b"MATLAB 5.0 MAT-file, ebm fuzz seed".ljust(124) + b"\x00\x01IM"
    for name, dims, cls, mi, data in arrays:
        m = sub(6, struct.pack("<II", cls, 0)) + sub(5, struct.pack(f"<{len(dims)}i", *dims)) + sub(1, name.encode()) + sub(mi, data)
        out += struct.pack("<II", 14, len(m)) + m
    open(path, "wb").write(out)
mat_v5(f"{S}/svhn/plain-1.mat", [("X", [32, 32, 3, 1], 9, 2, bytes(i % 251 for i in range(3072))),
                                 ("y", [1, 1], 6, 9, struct.pack("<d", 10.0))])
npy(f"{S}/npy/u1-nhwc.npy", "|u1", [2, 4, 4, 3], bytes(range(96)))
npy(f"{S}/npy/f4-points.npy", "<f4", [3, 2], struct.pack("<6f", 0.5, -1, 2, 3, 0, 1))
npy(f"{S}/npy/i8-labels.npy", "<i8", [4], struct.pack("<4q", 0, 1, 2, 1))

def png(path, w, h):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = b"".join(b"\x00" + bytes(v for x in range(w) for v in ((x * 8) % 256, (y * 8) % 256, 128)) for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
png(f"{S}/image/rgb-32.png", 32, 32)
png(f"{S}/image/rgb-12x9.png", 12, 9)
import os
os.makedirs(f"{work}/folder/a"); os.makedirs(f"{work}/folder/b")
png(f"{work}/folder/a/0.png", 32, 32); png(f"{work}/folder/b/0.png", 32, 32)
PY
# SVHN: also a SciPy-written fixture of the tests (tests/data/make-svhn-fixture.py), compressed.
cp tests/data/svhn/test_32x32.mat "$S/svhn/"

# A JPEG: one image of the CIFAR-10 JPEG copy beside the repository, when there is one; it goes to
# fuzz/corpus/image (not committed: data-set content stays out of the repository).
jpeg_tar=../shared/data/cifar10-jpeg/test.tar.gz
if [ -f "$jpeg_tar" ]; then
  mkdir -p fuzz/corpus/image
  python3 - "$jpeg_tar" fuzz/corpus/image/cifar10-test.jpg <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    m = next(m for m in t if m.name.lower().endswith((".jpg", ".jpeg")))
    open(sys.argv[2], "wb").write(t.extractfile(m).read())
PY
fi

# A decode cache: `ebm data` on a two-image folder fills it.
EBM_CACHE_DIR="$work/cache" "$EBM" data "folder:$work/folder" > /dev/null
cp "$work"/cache/folder-*.bin "$S/decode_cache/two-images.bin"

# A checkpoint of a tiny MLP: manifest and safetensors files.
"$EBM" train --config configs/toy2d.toml --out "$work/run" --quiet --set train.max_steps=1 \
  --set model.hidden=4 --set buffer.size=8 --set data.batch_size=8 --set data.spec='"toy2d:8gaussians:64"' \
  --set train.device='"cpu"' > /dev/null
ck=$(ls -d "$work"/run/checkpoints/step-* | tail -1)
cp "$ck/manifest.json" "$S/manifest/"
for f in model optim buffer; do cp "$ck/$f.safetensors" "$S/safetensors/"; done

cp configs/*.toml "$S/config/"
ls -lR "$S" | awk '/^-/ {n++; b += $5} END {print n " seed files, " b " bytes"}'
