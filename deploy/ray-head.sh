#!/usr/bin/env bash
# The Ray head node. Schedules nothing itself by default (RAY_HEAD_CPUS=0), so the
# workers carry the tasks; the workflow manager actor needs no CPU.
set -euo pipefail
. "$(dirname "$0")/ray-auth.sh"
exec ray start --head \
  --port="${RAY_PORT:-6380}" \
  ${RAY_NODE_IP:+--node-ip-address="$RAY_NODE_IP"} \
  --num-cpus="${RAY_HEAD_CPUS:-0}" \
  --include-dashboard=false \
  --disable-usage-stats \
  ${RAY_TEMP_DIR:+--temp-dir="$RAY_TEMP_DIR"} \
  --block
