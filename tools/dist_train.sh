#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG GPUS [tools/train.py options]
#
# One node:    bash tools/dist_train.sh CONFIG 8 --work-dir work_dirs/x
# Multi-node:  on every node, with the same MASTER_ADDR / PORT and NODE_RANK = 0 .. NNODES-1:
#              NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500), PYTHON (python),
#   TORCHRUN_ARGS (more torchrun flags, e.g. "--rdzv-backend=c10d --rdzv-endpoint=HOST:PORT").
# GPUS is the number of processes per node. Without GPUs the processes use gloo on CPU (tests, debugging).
# Debugging DDP: TORCH_DISTRIBUTED_DEBUG=DETAIL bash tools/dist_train.sh ...
set -euo pipefail
usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}
if [ $# -ge 1 ] && { [ "$1" = "-h" ] || [ "$1" = "--help" ]; }; then usage; exit 0; fi
if [ $# -lt 2 ]; then usage >&2; exit 2; fi
CONFIG=$1; GPUS=$2; shift 2
if [ ! -f "$CONFIG" ]; then echo "error: config file not found: $CONFIG" >&2; exit 1; fi
source "$(dirname "${BASH_SOURCE[0]}")/torchrun_launch.sh"
torchrun_launch train.py "$CONFIG" --launcher pytorch "$@"
