#!/bin/sh
# The entrypoint of docker/postgres.Dockerfile: what the official postgres image's entrypoint
# does for us, on Debian's packages, and pg_auto_failover's members and monitor for
# docker-compose.cluster.yml (what scripts/infra pg-member-start / pg-monitor-start do on the
# host). Runs as root; the servers run as postgres.
#
#   POSTGRES_PASSWORD   the superuser's (postgres) password; required, no default
#   MOA_DB_OWNER_PASSWORD, MOA_DB_SERVICE_PASSWORD  the passwords of the domain's login roles
#                       <domain>_owner (owns the database, loads the seed, migrates) and
#                       <domain>_service (what the service runs as); required but for the monitor
#   POSTGRES_DB         the domain's database (set by the image: item_db, ...)
#   MOA_PG_ROLE         unset: one server; `monitor`: pg_auto_failover's monitor; `member`: a
#                       member of the formation MOA_PG_FORMATION (item, alarm, user), named
#                       MOA_PG_NAME (its container's name: item-db-1 ...), whose monitor runs on
#                       the host MOA_PG_MONITOR
#
# On an empty data directory: initdb (password logins from anywhere, trust on the Unix socket
# inside the container), then the seed (/usr/local/share/moa/init_database.sql) is loaded into
# POSTGRES_DB by a server listening on the Unix socket only, so a healthcheck over TCP turns
# healthy only once the seed is in. A formation's first member does the same, then registers
# with the monitor as the primary; the others are copied from it by pg_autoctl (pg_basebackup).
# Then the real server (a member's and the monitor's supervised by `pg_autoctl run`), with the
# same settings as scripts/infra's (PG_TUNING there; docs/performance.md says why).
#
# pg_auto_failover's own users (its monitor's checks, replication, the keepers' reports) log in
# without a password from the networks the container is on (pg_hba `samenet`): in
# docker-compose.cluster.yml the monitor is on `pg-control` with the members only, and a
# domain's members share their data network with that domain's service alone.
set -eu

role=${MOA_PG_ROLE:-}
pass=${POSTGRES_PASSWORD:-}
if [ -z "$pass" ] && [ "$role" != monitor ]; then
  echo "set POSTGRES_PASSWORD (the superuser's password; docs/security.md)" >&2
  exit 2
fi
owner_pass=${MOA_DB_OWNER_PASSWORD:-}
service_pass=${MOA_DB_SERVICE_PASSWORD:-}
if { [ -z "$owner_pass" ] || [ -z "$service_pass" ]; } && [ "$role" != monitor ]; then
  echo "set MOA_DB_OWNER_PASSWORD and MOA_DB_SERVICE_PASSWORD (the domain's login roles; docs/security.md)" >&2
  exit 2
fi

SETTINGS="listen_addresses = '*'
max_connections = 200
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_compression = lz4"

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- env HOME=/var/lib/postgresql "$@"; }

# init_and_seed: a new cluster in PGDATA with the superuser's password and the seed loaded
init_and_seed() {
  db=${POSTGRES_DB:?the image sets POSTGRES_DB}
  pwfile=$(mktemp)
  printf '%s\n' "$pass" >"$pwfile"
  chown postgres "$pwfile"
  as_postgres initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  as_postgres pg_ctl -D "$PGDATA" -w -t 120 -o "-c listen_addresses='' -k /var/run/postgresql" start >/dev/null
  # the domain's two login roles (postgres/roles.sql, as scripts/infra pg-roles on the host);
  # the database and everything the seed makes belong to the owner role, which loads it
  domain=${db%_db}
  as_postgres psql -X -q -v ON_ERROR_STOP=1 -d postgres -v domain="$domain" \
    -v owner_password="$owner_pass" -v service_password="$service_pass" -f /usr/local/share/moa/roles.sql >/dev/null
  as_postgres psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "create database $db owner ${domain}_owner"
  sed 's/ OWNER TO postgres;$/ OWNER TO CURRENT_USER;/' /usr/local/share/moa/init_database.sql |
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -U "${domain}_owner" -d "$db" >/dev/null
  as_postgres pg_ctl -D "$PGDATA" -w -t 120 -m fast stop >/dev/null
  echo "moa: $db created and loaded from the seed"
}

# autoctl ARG...: pg_autoctl as postgres, its configuration under postgres' home
autoctl() { as_postgres env XDG_RUNTIME_DIR=/var/run/postgresql PGDATA="$PGDATA" pg_autoctl "$@"; }

monitor_uri() { echo "postgres://autoctl_node@${MOA_PG_MONITOR:?set MOA_PG_MONITOR}:5432/pg_auto_failover?sslmode=disable"; }

# monitor_sql SQL: a query on the monitor (empty when it does not answer yet)
monitor_sql() { as_postgres psql -X -q -tA -d "$(monitor_uri)" -c "$1" 2>/dev/null || true; }

# A container's (re)start: nothing of ours runs yet, so pid files are a previous run's. Left,
# they stop the restart: `pg_autoctl run` finds its own pid (1, as before) in its pid file.
rm -f "$PGDATA/postmaster.pid" /var/run/postgresql/.s.PGSQL.*
find /var/run/postgresql -name pg_autoctl.pid -delete

case $role in
  '')
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
      init_and_seed
      echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
      printf '\n# docker/postgres-entrypoint.sh\n%s\n' "$SETTINGS" >>"$PGDATA/postgresql.conf"
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- postgres -D "$PGDATA"
    ;;

  monitor)
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
      autoctl create monitor --pgdata "$PGDATA" --pgport 5432 --hostname "$(hostname)" \
        --skip-pg-hba --no-ssl --pgctl "$(command -v pg_ctl)"
      cat >"$PGDATA/pg_hba.conf" <<'HBA'
# docker/postgres-entrypoint.sh: the members' keepers from the networks this container is on
local all all trust
host pg_auto_failover autoctl_node samenet trust
HBA
      printf '\n# docker/postgres-entrypoint.sh\nshared_buffers = 32MB\n' >>"$PGDATA/postgresql.conf"
      cat /usr/local/share/moa/pg-monitor.conf >>"$PGDATA/postgresql.conf"
      # the formations, before any member asks for its own (create may leave the server running)
      as_postgres pg_ctl -D "$PGDATA" status >/dev/null ||
        as_postgres pg_ctl -D "$PGDATA" -w -t 120 -o "-c listen_addresses=''" start >/dev/null
      for f in ${MOA_PG_FORMATIONS:?set MOA_PG_FORMATIONS (item alarm user)}; do
        as_postgres psql -X -q -v ON_ERROR_STOP=1 -d pg_auto_failover -c \
          "select pgautofailover.create_formation('$f', 'pgsql', 'postgres', true, 0)" >/dev/null
      done
      as_postgres pg_ctl -D "$PGDATA" -w -t 120 -m fast stop >/dev/null
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
      env HOME=/var/lib/postgresql XDG_RUNTIME_DIR=/var/run/postgresql pg_autoctl run --pgdata "$PGDATA"
    ;;

  member)
    formation=${MOA_PG_FORMATION:?set MOA_PG_FORMATION (item, alarm or user)}
    name=${MOA_PG_NAME:?set MOA_PG_NAME (item-db-1 ...)}
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
      until [ -n "$(monitor_sql "select 1 from pgautofailover.formation where formationid = '$formation'")" ]; do
        echo "moa: waiting for the monitor ($MOA_PG_MONITOR) and formation $formation"
        sleep 2
      done
      # member 1 makes the formation's first server (our own initdb and seed: the primary); the
      # others wait for it and are copied from it
      case $name in
        *-1)
          if [ -z "$(monitor_sql "select 1 from pgautofailover.node where formationid = '$formation'")" ]; then
            init_and_seed
            printf '\n# docker/postgres-entrypoint.sh\n%s\n' "$SETTINGS" >>"$PGDATA/postgresql.conf"
            # the standbys' copies (pg_basebackup) carry it
            cat >"$PGDATA/pg_hba.conf" <<'HBA'
# docker/postgres-entrypoint.sh: pg_auto_failover's own users from the networks this container
# is on, everyone else by password
local all all trust
host all pgautofailover_monitor samenet trust
host all,replication pgautofailover_replicator samenet trust
host all all all scram-sha-256
HBA
          fi
          ;;
        *)
          until primary=$(monitor_sql "select nodehost from pgautofailover.node where formationid = '$formation'
                            and reportedstate in ('single', 'primary', 'wait_primary') limit 1") &&
            [ -n "$primary" ]; do
            echo "moa: waiting for formation $formation's primary"
            sleep 2
          done
          # pg_basebackup waits for a spread checkpoint (scripts/infra pg-member-start says why):
          # an immediate one on the primary first
          as_postgres env PGPASSWORD="$pass" psql -X -q -d "postgres://postgres@$primary:5432/postgres" -c checkpoint \
            >/dev/null 2>&1 || echo "moa: CHECKPOINT on the primary ($primary) failed" >&2
          ;;
      esac
      autoctl create postgres --pgdata "$PGDATA" --pgport 5432 --hostname "$name" --name "$name" \
        --monitor "$(monitor_uri)" --formation "$formation" --skip-pg-hba --no-ssl --dbname postgres \
        --pgctl "$(command -v pg_ctl)"
      # its keeper demotes an isolated primary after 2 s (scripts/pg-monitor.conf)
      autoctl config set --pgdata "$PGDATA" timeout.network_partition_timeout 2 >/dev/null
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
      env HOME=/var/lib/postgresql XDG_RUNTIME_DIR=/var/run/postgresql pg_autoctl run --pgdata "$PGDATA"
    ;;

  *)
    echo "MOA_PG_ROLE must be unset, monitor or member (got '$role')" >&2
    exit 2
    ;;
esac
