#!/usr/bin/env bash
# Shared by tools/dist_train.sh and tools/dist_test.sh (sourced, not run): launch one tools/*.py under torchrun.
# torchrun_launch SCRIPT.py ARGS...  -> GPUS processes per node (GPUS set by the caller) running tools/SCRIPT.py ARGS.
torchrun_launch() {
  local script=$1; shift
  case "$GPUS" in ''|*[!0-9]*|0) echo "error: GPUS must be a positive integer, got '$GPUS'" >&2; exit 2;; esac
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  PYTHONPATH="$here/..:${PYTHONPATH:-}" exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$GPUS" --master_port="${PORT:-29500}" ${TORCHRUN_ARGS:-} \
    "$here/$script" "$@"
}
