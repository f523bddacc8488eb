#!/usr/bin/env bash
# The PostgreSQL role the test suite and the demo use: gnomon, allowed to create databases
# (each test session makes its own and drops it). Idempotent.
set -euo pipefail
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qtA <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gnomon') THEN
    CREATE ROLE gnomon LOGIN CREATEDB;
  END IF;
END $$;
SQL
psql -h 127.0.0.1 -U postgres -qtA -c "SELECT 1 FROM pg_database WHERE datname = 'gnomon'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -q -c "CREATE DATABASE gnomon OWNER gnomon"
