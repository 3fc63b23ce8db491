#!/usr/bin/env bash
# Every GPU figure of the performance issue in one prepared pass (H100, bf16): DeiT-S and DeiT-B grown 2x, eager
# and --compile, and the detection backbone. Needs only torch + timm (tools/benchmark.py never imports OpenMMLab).
#
#   bash scripts/gpu_checks.sh [OUT_DIR]        # default $OUT, else work_dirs/gpu_checks
#
# Each run writes OUT_DIR/NAME.json (the benchmark's --json document) and NAME.log, and is cut at LIMIT seconds
# (default 240) so one slow compile cannot eat the others. SMOKE=1 runs the same sequence on the CPU with a tiny
# model, to check the script itself before spending device time.
set -u
out=${1:-${OUT:-work_dirs/gpu_checks}}
mkdir -p "$out"
py=${PYTHON:-python}
limit=${LIMIT:-240}
# flags after the per-run ones win (argparse keeps the last), so SMOKE shrinks every run
tail_flags=(--device cuda --amp bf16 --json)
if [ "${SMOKE:-0}" = 1 ]; then
    tail_flags=(--device cpu --json --arch 32,2,2 --depth 4 --img-size 32 --batch-size 2 --warmup 1 --steps 1 --repeats 1)
fi
status=0

run() {
    local name=$1
    shift
    echo "[gpu_checks] $(date +%T) $name: $*"
    timeout "$limit" "$py" tools/benchmark.py "$@" "${tail_flags[@]}" >"$out/$name.json" 2>"$out/$name.log"
    local rc=$?
    echo "[gpu_checks] $(date +%T) $name exit $rc"
    [ "$rc" = 0 ] || status=1
}

{ nvidia-smi || echo "no nvidia-smi"; "$py" -c 'import torch, timm; print("torch", torch.__version__, "timm", timm.__version__)'; } \
    >"$out/environment.txt" 2>&1
run deit-s-24 --arch deit-small --depth 24 --batch-size 128
run deit-b-24 --arch deit-base --depth 24 --batch-size 128
run detection-b-24 --detection --arch deit-base --depth 24 --batch-size 2 --modes train
run deit-s-24-compile --arch deit-small --depth 24 --batch-size 128 --compile
run deit-b-24-compile --arch deit-base --depth 24 --batch-size 128 --compile
"$py" - "$out" <<'EOF'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob('*.json')):
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        print(f'{path.stem}: no result (see {path.stem}.log)')
        continue
    print(path.stem, doc['device'], ' '.join(f'{k}={v:.3f}' for k, v in doc['ratios'].items()))
EOF
exit $status
