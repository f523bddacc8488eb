#!/usr/bin/env bash
# System packages the tests drive: Debian's Chromium (Playwright cannot download browsers
# here) and the PostgreSQL client tools. Idempotent; skips apt when everything is present.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v psql >/dev/null || need+=(postgresql-client)
command -v pg_isready >/dev/null || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# kubectl builds deploy/kubernetes in tests/deploy/test_kubernetes.py (`kubectl kustomize`).
# It comes with this machine's image; Debian's kubernetes-client (1.20) is too old for it.
command -v kubectl >/dev/null || echo "setup-system.sh: no kubectl; the Kubernetes tests will fail" >&2
