#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 (trust auth), starting one if not.
# The machine normally runs one; this covers a stopped service and a machine without one.
set -euo pipefail
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then exit 0; fi
echo "ensure_postgres: nothing answers on 127.0.0.1:5432; starting a server" >&2
if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  data=/tmp/figalign-pg
  if [ ! -d "$data" ]; then
    mkdir -p "$data" && chown postgres "$data"
    su postgres -c "$bin/initdb -D $data -A trust -U postgres" >/dev/null
  fi
  su postgres -c "$bin/pg_ctl -D $data -o '-h 127.0.0.1 -p 5432' -l $data/log -w start"
fi
for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && exit 0; sleep 1; done
echo "ensure_postgres: PostgreSQL did not come up" >&2; exit 1
