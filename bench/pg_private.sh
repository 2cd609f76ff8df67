#!/usr/bin/env bash
# A private Postgres cluster sized for the store at the paper's scale, for bench_store_scale.py.
#
# The machine's shared server keeps Postgres' stock shared_buffers (128 MB); at 10 M figures the
# near-duplicate band indexes alone are ~1.1 GB (docs/benchmarks.md), so dedup reads them through
# the OS cache page by page. This starts a second cluster from the same binaries with the buffers
# a dedicated store server would have (the usual ~25 % of RAM), on its own port and data folder:
#
#   bench/pg_private.sh start /tmp/pg-bench 5433 6GB
#   FIGALIGN_BENCH_PG_URL=postgresql+psycopg2://postgres@127.0.0.1:5433/postgres \
#     .venv/bin/python bench/bench_store_scale.py --figures 10000000 --generate-only
#   bench/pg_private.sh stop /tmp/pg-bench
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?data folder}; port=${3:-5433}; buffers=${4:-6GB}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
case "$cmd" in
  start)
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir"; [ "$(id -u)" = 0 ] && chown postgres "$dir"
      as_pg "$bin/initdb -D '$dir' -U postgres --auth=trust >/dev/null"
    fi
    as_pg "$bin/pg_ctl -D '$dir' -l '$dir/log' -w -o \"-p $port -k /tmp -c shared_buffers=$buffers \
      -c effective_cache_size=16GB -c maintenance_work_mem=1GB -c max_wal_size=8GB\" start";;
  stop) as_pg "$bin/pg_ctl -D '$dir' -m fast -w stop";;
  *) echo "usage: $0 start|stop DIR [PORT] [SHARED_BUFFERS]" >&2; exit 2;;
esac
