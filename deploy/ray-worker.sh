#!/usr/bin/env bash
# A Ray worker node joining the head at $RAY_HEAD_ADDRESS (host:port), with the cluster's
# token. Scale with `docker compose up --scale ray-worker=N`.
set -euo pipefail
: "${RAY_HEAD_ADDRESS:?set RAY_HEAD_ADDRESS to the head host:port}"
. "$(dirname "$0")/ray-auth.sh"
exec ray start \
  --address="$RAY_HEAD_ADDRESS" \
  ${RAY_NODE_IP:+--node-ip-address="$RAY_NODE_IP"} \
  ${RAY_WORKER_CPUS:+--num-cpus="$RAY_WORKER_CPUS"} \
  --disable-usage-stats \
  ${RAY_TEMP_DIR:+--temp-dir="$RAY_TEMP_DIR"} \
  --block
