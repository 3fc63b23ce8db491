#!/usr/bin/env bash
# Distributed testing with torchrun: tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py options]
#
# One node:    bash tools/dist_test.sh CONFIG CHECKPOINT 8 --out results.pkl
# Multi-node:  on every node, with the same MASTER_ADDR / PORT and NODE_RANK = 0 .. NNODES-1:
#              NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_test.sh CONFIG CKPT 8
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500), PYTHON (python),
#   TORCHRUN_ARGS (more torchrun flags).
# GPUS is the number of processes per node. Without GPUs the processes use gloo on CPU (tests, debugging).
set -euo pipefail
usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}
if [ $# -ge 1 ] && { [ "$1" = "-h" ] || [ "$1" = "--help" ]; }; then usage; exit 0; fi
if [ $# -lt 3 ]; then usage >&2; exit 2; fi
CONFIG=$1; CHECKPOINT=$2; GPUS=$3; shift 3
if [ ! -f "$CONFIG" ]; then echo "error: config file not found: $CONFIG" >&2; exit 1; fi
if [ ! -f "$CHECKPOINT" ]; then echo "error: checkpoint file not found: $CHECKPOINT" >&2; exit 1; fi
source "$(dirname "${BASH_SOURCE[0]}")/torchrun_launch.sh"
torchrun_launch test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
