#!/usr/bin/env bash
# bench/read-model-drills.sh: the read models' drills on a running stack loaded with a big seed
# (docs/performance.md, "How to reproduce", B): alarm set + clear while the read models apply
# every change, propagation, then each outage of issue #22's table (the user service, the alarm
# service, RabbitMQ, user_db stopped in turn and started again) with users no service was asked
# about before (tokens by md5 order from offset 300,000, past the cold passes'), and whether every
# view answered 200 meanwhile reached user_db. Prints status counts; changes the stack's data
# (alarms set and cleared, views recorded). MOA_RUN_DIR as for every scripts/* command.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
export RUST_LOG=warn
W=$(mktemp -d /tmp/moa-drills.XXXXXX)
trap 'rm -rf "$W"' EXIT
B=target/release
q() { scripts/psql "$1" -X -tA -c "$2"; }
# never-seen users: tokens by md5 order beyond the 300,000 used by the cold passes
fresh() { q user "select access_token from \"user\" order by md5(id::text) limit $2 offset $1"; }
# status counts of GET URL for each token in FILE (16 at a time)
statuses() { # URL FILE
  xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 -H 'USER-TOKEN: {}' "$1" <"$2" | sort | uniq -c | tr '\n' ' '; echo; }
echo "== alarm set + clear with both read models applying every change (64 users spread over 1M)"
q user "select 'token' union all (select access_token from (select access_token, row_number() over (order by id) - 1 as rn, count(*) over () as c from \"user\") t where rn % greatest(c / 64, 1) = 0 order by rn limit 64)" >"$W/tokens-load.csv"
for _ in 1 2; do $B/bench-load --tokens "$W/tokens-load.csv" --items 1-100 -c 64 -n 48000 2>&1 | grep "LOAD name=alarm_set+clear"; done
echo "== propagation (bench-probe, 200 writes)"
tok=$(sed -n 2p "$W/tokens-load.csv")
$B/bench-probe --token "$tok" -n 200 2>&1 | tail -2
scripts/status | tail -3
fresh 300000 1000 >"$W/f1.txt"; fresh 301000 200 >"$W/f2.txt"; fresh 301200 200 >"$W/f3.txt"
fresh 301400 200 >"$W/f4.txt"; fresh 301600 200 >"$W/f5.txt"; fresh 301800 200 >"$W/f6.txt"
echo "== user service stopped: 1,000 never-seen users, item list"
scripts/down user >/dev/null 2>&1
echo "item list: $(statuses http://127.0.0.1:5001/ "$W/f1.txt")"
echo "item detail (records a view): $(statuses http://127.0.0.1:5001/7 "$W/f2.txt")"
echo "alarm set: $(xargs -P 16 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 -H 'USER-TOKEN: {}' -H 'Content-Type: application/json' -d '{"item_id": 9}' http://127.0.0.1:6001/ <"$W/f2.txt" | sort | uniq -c | tr '\n' ' ')"
scripts/up user >/dev/null 2>&1
echo "== alarm service stopped: GET :7001/visit, 200 never-seen users"
scripts/down alarm >/dev/null 2>&1
echo "visit: $(statuses http://127.0.0.1:7001/visit "$W/f3.txt")"
scripts/up alarm >/dev/null 2>&1
echo "== RabbitMQ stopped: item list, item detail, 200 never-seen users each"
scripts/down rabbitmq >/dev/null 2>&1
echo "item list: $(statuses http://127.0.0.1:5001/ "$W/f4.txt")"
echo "item detail: $(statuses http://127.0.0.1:5001/8 "$W/f5.txt")"
scripts/up rabbitmq >/dev/null 2>&1
echo "== user_db stopped (user service up): item detail, 200 never-seen users"
scripts/down user-db >/dev/null 2>&1
echo "item detail: $(statuses http://127.0.0.1:5001/9 "$W/f6.txt")"
scripts/up user-db >/dev/null 2>&1
sleep 15
echo "== views recorded during the drills reach user_db (RabbitMQ and user_db back)"
for f in f2 f5 f6; do
  ids=$(q user "select count(*) from visit v join \"user\" u on u.id = v.user_id where u.access_token in ($(sed "s/.*/'&'/" "$W/$f.txt" | paste -sd,))")
  echo "$f: visits of those users in user_db: $ids"
done
scripts/status | tail -9
