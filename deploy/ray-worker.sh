#!/usr/bin/env bash
# A Ray worker node joining the head at $RAY_HEAD_ADDRESS (host:port). Scale with
# `docker compose up --scale ray-worker=N`.
set -euo pipefail
: "${RAY_HEAD_ADDRESS:?set RAY_HEAD_ADDRESS to the head's host:port}"
exec ray start \
  --address="$RAY_HEAD_ADDRESS" \
  --node-ip-address="${RAY_NODE_IP:-$(hostname -i | awk '{print $1}')}" \
  ${RAY_WORKER_CPUS:+--num-cpus="$RAY_WORKER_CPUS"} \
  --disable-usage-stats \
  ${RAY_TEMP_DIR:+--temp-dir="$RAY_TEMP_DIR"} \
  --block
