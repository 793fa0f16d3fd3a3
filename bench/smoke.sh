#!/usr/bin/env bash
# Every benchmark once, at tiny sizes, so none can rot unnoticed (one crashed for a release after a migration
# moved a column its backlog writer still inserted). Figures are printed but not judged: see README for real runs.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp -d)/bench-smoke
mkdir -p "$log"
failed=0
run() {
    local name=$1; shift
    local started=$SECONDS
    if timeout 300 python "$@" >"$log/$name.log" 2>&1; then
        echo "bench smoke: $name ok ($((SECONDS - started)) s)"
    else
        echo "bench smoke: $name FAILED ($((SECONDS - started)) s); last lines:"
        tail -n 30 "$log/$name.log"
        failed=1
    fi
}
run ingest bench/ingest.py --seconds 1 --rounds 1 --client python
run pipeline bench/pipeline.py --events 50 --rate 100 --backlog 300 --small-backlog 100
# the same on PostgreSQL, two hubs sharing one fresh schema (HUB_BENCH_PG_URL, default the local test server)
if python bench/stores.py --pg-reachable; then
    run ingest-pg2 bench/ingest.py --seconds 1 --rounds 1 --client python --store postgres --processes 2
    run pipeline-pg2 bench/pipeline.py --events 50 --rate 100 --backlog 300 --small-backlog 100 --store postgres \
        --processes 2
else
    echo "bench smoke: ingest-pg2, pipeline-pg2 skipped: no PostgreSQL at" \
         "${HUB_BENCH_PG_URL:-postgresql://127.0.0.1:5432/test} (set HUB_BENCH_PG_URL)"
fi
run sources bench/sources.py --findings 100 --pages 2 --per-page 20
run siem bench/siem.py --hec-events 1000 --bulk-events 500 --batch 100
run poison bench/poison.py --events 10 --seconds 2
run flaky bench/flaky.py --messages 5 --outage 2 --max-seconds 10
run sla bench/sla.py --findings 500 --rounds 1
run console bench/console.py --events 2000 --findings 200 --requests 3
# exits 1 unless hub serve dropped every half-sent request at its deadlines and a signed POST still got through
run slowclients bench/slowclients.py --connections 40 --hold-secs 3 --header-timeout 1 --body-timeout 1
exit $failed
