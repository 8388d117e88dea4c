#!/usr/bin/env bash
# bench/baseline.sh — what an ops engineer writes from the incident runbook
# (production-session-fix.md) instead of running mockmate-diag: can we log in,
# are the tables there, is there an active user, does Redis answer. One client
# process per question, run in sequence, as a shell script would.
#
#   DATABASE_URL=postgresql://… REDIS_URL=redis://… bench/baseline.sh
#
# bench/run times it against `mockmate-diag --env production`. It checks less
# than the tool does (no column, foreign key, privilege, lock or memory checks,
# no hints) and stops at the first failure, so it is a lower bound on what the
# hand-written way costs.
set -euo pipefail
: "${DATABASE_URL:?set DATABASE_URL}"
: "${REDIS_URL:?set REDIS_URL}"

q() { psql "$DATABASE_URL" -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"; }

# "Database connectivity issues"
q 'select 1' >/dev/null
# "Missing database tables" (migrations not run)
tables=$(q "select count(*) from information_schema.tables
            where table_schema = 'public' and table_name in ('users', 'sessions')")
[ "$tables" = 2 ] || { echo "baseline: missing tables ($tables of 2)" >&2; exit 1; }
# "No users in production database"
active=$(q 'SELECT COUNT(*) FROM users WHERE is_active = true')
[ "$active" -gt 0 ] || { echo "baseline: no active users" >&2; exit 1; }
# "Redis connection issues"
pong=$(redis-cli -u "$REDIS_URL" --no-auth-warning ping)
[ "$pong" = PONG ] || { echo "baseline: redis said '$pong'" >&2; exit 1; }
echo "ok: tables=$tables active_users=$active redis=$pong"
