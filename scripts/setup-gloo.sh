#!/usr/bin/env bash
# Gloo's headers, which c10d's ProcessGroupGloo.hpp includes and the torch wheel does not ship:
# build.rs compiles csrc/dist.cpp (multi-process training) only when it finds them. From Debian's
# package libgloo-dev (apt verifies it), installed once; nothing of it is linked (libtorch_cpu
# carries Gloo itself). Skipped when GLOO_INCLUDE_DIR or /usr/include already has them.
set -euo pipefail
for d in "${GLOO_INCLUDE_DIR:-}" /usr/include /usr/local/include; do
  if [ -n "$d" ] && [ -f "$d/gloo/algorithm.h" ]; then
    exit 0
  fi
done
if ! command -v apt-get >/dev/null; then
  echo "setup-gloo: Gloo's headers not found and no apt-get here: install Gloo's headers and set GLOO_INCLUDE_DIR, or ebm builds without multi-process training" >&2
  exit 0
fi
echo "setup-gloo: installing libgloo-dev (Gloo's headers, for multi-process training)"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libgloo-dev >/dev/null
