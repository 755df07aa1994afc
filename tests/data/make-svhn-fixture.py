"""Writes tests/data/svhn/{train,test}_32x32.mat: SVHN's layout in miniature, written by SciPy
(an independent MATLAB v5 writer, compressed like the official files): X is 32x32x3xN uint8 with
X[r, c, ch, n] = (r + 2c + 50ch + 7n) % 256, y is Nx1 uint8 with 10 meaning digit 0.
Run once with a Python that has scipy (not needed by the tests):
    python3 tests/data/make-svhn-fixture.py
"""
import os
import numpy as np
import scipy.io

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "svhn")
os.makedirs(here, exist_ok=True)
for split, labels in (("train", [10, 1, 5, 9]), ("test", [3, 10, 7])):
    n = len(labels)
    r, c, ch, k = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), np.arange(n), indexing="ij")
    x = ((r + 2 * c + 50 * ch + 7 * k) % 256).astype(np.uint8)
    y = np.array(labels, dtype=np.uint8).reshape(n, 1)
    scipy.io.savemat(os.path.join(here, f"{split}_32x32.mat"), {"X": x, "y": y}, do_compression=True)
