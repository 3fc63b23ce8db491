#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG GPUS [train.py args...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, PORT on every node (torchrun's own flags).
set -euo pipefail
if [ $# -lt 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: $0 CONFIG GPUS [tools/train.py options]"
  echo "  env: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500)"
  exit 0
fi
CONFIG=$1; GPUS=$2; shift 2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHONPATH="$here/..:${PYTHONPATH:-}" exec python -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --nproc_per_node="$GPUS" --master_port="${PORT:-29500}" \
  "$here/train.py" "$CONFIG" --launcher pytorch "$@"
