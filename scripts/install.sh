#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install everything mmscalenet needs.
#
# Why a script: mmdet 3.3.0 needs mmcv's compiled ops, and PyPI ships mmcv 2.1.0 only as source. Building it
# takes ~20 min on 2 cores, so the wheel is built once per (mmcv, torch, python, cpu/cuda) combination into a
# cache outside the checkout ($MMSCALENET_CACHE, default ~/.cache/mmscalenet) and reused by every clone.
#
# Environment overrides: PYTHON (interpreter for the venv), VENV (default .venv), TORCH_VERSION,
# TORCHVISION_VERSION, MMSCALENET_CACHE, MAX_JOBS.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
MMCV_VERSION="2.1.0"
CACHE="${MMSCALENET_CACHE:-$HOME/.cache/mmscalenet}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

# Skip everything when the env was completed by this exact script + package metadata.
stamp="$VENV/.mmscalenet-installed"
want="$(cat scripts/install.sh setup.py requirements.txt 2>/dev/null | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import mmscalenet" 2>/dev/null; then
  say "environment $VENV is up to date"
  exit 0
fi
rm -f "$stamp"   # an interrupted install must never look complete

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV" || die "could not create a virtual environment with $PYTHON"
fi
py="$VENV/bin/python"
pip=("$py" -m pip install --disable-pip-version-check -q)

say "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION and build tools"
"${pip[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
  || die "torch $TORCH_VERSION could not be installed (set TORCH_VERSION/TORCHVISION_VERSION to a pair your index has)"
# mmcv's setup.py and mmengine's config loader import pkg_resources, gone from setuptools >= 82.
"${pip[@]}" "setuptools<82" wheel ninja "numpy" packaging || die "build tools could not be installed"

# ---- mmcv 2.1.0 with ops, from the wheel cache or built once --------------------------------------------------
read -r torch_tag py_tag cuda_tag < <("$py" - <<'PY'
import sys, shutil, torch
cuda = "cpu"
if torch.version.cuda and torch.cuda.is_available() and shutil.which("nvcc"):
    cuda = "cu" + torch.version.cuda.replace(".", "")
print(torch.__version__.split("+")[0], f"cp{sys.version_info[0]}{sys.version_info[1]}", cuda)
PY
)
wheel_dir="$CACHE/wheels/mmcv-$MMCV_VERSION-torch$torch_tag-$py_tag-$cuda_tag"
have_wheel() { compgen -G "$wheel_dir/mmcv-$MMCV_VERSION-*.whl" >/dev/null; }

if ! have_wheel; then
  say "no cached mmcv wheel in $wheel_dir: building mmcv $MMCV_VERSION with ops ($cuda_tag, $MAX_JOBS jobs, ~20 min on 2 cores)"
  work="$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  "$py" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$work" \
    || die "could not download the mmcv $MMCV_VERSION source distribution"
  tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work" || die "could not unpack the mmcv source"
  src="$work/mmcv-$MMCV_VERSION"
  # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes -std=c++14 / c++17.
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  if [ "$cuda_tag" = "cpu" ]; then export FORCE_CUDA=0; else export FORCE_CUDA=1; fi
  # --no-build-isolation: the build must see the torch installed above, or it silently builds no ops.
  ( cd "$src" && MMCV_WITH_OPS=1 "$here/$py" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps \
      -w "$work/dist" . > "$work/build.log" 2>&1 ) \
    || { tail -n 40 "$work/build.log" >&2; die "mmcv build failed (full log above, last 40 lines)"; }
  mkdir -p "$wheel_dir"
  tmpw="$(mktemp -d "$wheel_dir.tmp.XXXXXX")"
  cp "$work"/dist/mmcv-*.whl "$tmpw/"
  mv "$tmpw"/mmcv-*.whl "$wheel_dir/"   # same filesystem: a finished wheel appears at once or not at all
  rmdir "$tmpw"
  say "cached $(basename "$wheel_dir"/mmcv-*.whl)"
fi
"${pip[@]}" "$wheel_dir"/mmcv-"$MMCV_VERSION"-*.whl || die "the cached mmcv wheel did not install"

say "installing mmengine, mmdet, timm and the project"
"${pip[@]}" -r requirements.txt || die "requirements.txt could not be installed"
# mmsegmentation 1.2.2's wheel installs its own test suite as a top-level package `tests`, which shadows every
# checkout's tests/ folder (a regular package wins over a namespace one): remove exactly the files its RECORD lists.
"$py" - <<'PY' || die "could not remove mmsegmentation's stray top-level tests package"
import importlib.metadata as md, os, shutil
try:
    dist = md.distribution('mmsegmentation')
except md.PackageNotFoundError:
    raise SystemExit(0)
stray = sorted({str(f).split('/')[0] for f in (dist.files or []) if str(f).startswith('tests/')})
for top in stray:
    path = os.path.join(str(dist.locate_file('')), top)
    if os.path.isdir(path):
        shutil.rmtree(path)
        print(f"[install] removed {path} (mmsegmentation's own test suite, shadowing tests/)")
PY
"${pip[@]}" --no-deps --no-build-isolation -e . || die "mmscalenet could not be installed"

"$py" - <<'PY' || die "the installed environment does not import cleanly (see the traceback above)"
import mmcv, mmengine, mmdet, timm
from mmcv.ops import nms, roi_align  # compiled ops, needed by Mask R-CNN
import mmscalenet
print(f"[install] ok: mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, "
      f"timm {timm.__version__}, torch {__import__('torch').__version__}")
PY
echo "$want" > "$stamp"
