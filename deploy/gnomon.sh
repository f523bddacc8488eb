#!/usr/bin/env bash
# Gnomon's scheduler and dashboard, joined to the Ray cluster at $RAY_ADDRESS with the
# cluster's token, on PostgreSQL. gnomon up starts a Ray node with no CPUs on this host
# for itself (a Ray driver needs one on its own host), which stops with it.
set -euo pipefail
: "${GNOMON_DATABASE_URL:?set GNOMON_DATABASE_URL (postgresql://...)}"
: "${RAY_ADDRESS:?set RAY_ADDRESS to the head host:port}"
. "$(dirname "$0")/ray-auth.sh"
gnomon db upgrade
exec gnomon up \
  --host "${GNOMON_HOST:-0.0.0.0}" \
  --port "${GNOMON_PORT:-8080}" \
  --ray-address "$RAY_ADDRESS" \
  ${GNOMON_DAGS:+--dags "$GNOMON_DAGS"} \
  ${GNOMON_EXAMPLES:+--examples}
