# shellcheck shell=bash
# Helpers shared by scripts/*. Source it, do not run it.

MOA_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MOA_REPO_DIR=$(cd "$MOA_SCRIPTS_DIR/.." && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
MOA_INFRA=$MOA_SCRIPTS_DIR/infra

# ---------------------------------------------------------------- output

say()  { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

now_ms() { date +%s%3N; }

# elapsed START_MS: seconds since START_MS, e.g. "4.2s"
elapsed() {
  local ms=$(( $(now_ms) - $1 ))
  printf '%d.%ds' $(( ms / 1000 )) $(( ms % 1000 / 100 ))
}

# show_log FILE [LINES]: the end of a log file, on stderr
show_log() {
  local file=$1 lines=${2:-30}
  if [ -r "$file" ]; then
    printf -- '---- last %s lines of %s ----\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2
    printf -- '----\n' >&2
  else
    printf 'no log at %s\n' "$file" >&2
  fi
}

# ---------------------------------------------------------------- processes

# as_user USER CMD...: run CMD as USER, in / (a working directory USER can enter)
as_user() {
  local user=$1
  shift
  if [ "$(id -un)" = "$user" ]; then
    (cd / && "$@")
  elif [ "$(id -u)" -eq 0 ]; then
    (cd / && exec setpriv --reuid="$user" --regid="$user" --init-groups -- "$@")
  else
    die "must run as root (or as $user) to run: $*"
  fi
}

# pid_alive PID: true if PID runs. A zombie counts as gone: orphans are reparented to
# PID 1, which need not reap them promptly (in this VM it takes ~1.5 s).
pid_alive() {
  local stat
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ]
}

# read_pid FILE: the pid on the first line of FILE, or nothing
read_pid() {
  if [ -r "$1" ]; then head -n 1 "$1" | tr -dc '0-9'; fi
}

# stop_pid PID SECONDS: SIGTERM the process group PID leads (the process alone
# if it leads none), wait up to SECONDS, then SIGKILL. Returns when it is gone.
stop_pid() {
  local pid=$1 secs=$2 target i
  pid_alive "$pid" || return 0
  target=$pid
  [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ] && target=-$pid
  kill -TERM -- "$target" 2>/dev/null || true
  for (( i = 0; i < secs * 10; i++ )); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  warn "pid $pid did not stop within ${secs}s, sending SIGKILL"
  kill -KILL -- "$target" 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  warn "pid $pid survived SIGKILL"
  return 1
}

# ---------------------------------------------------------------- ports & http

# port_in_use PORT: true if any local TCP socket uses port PORT, in any state
# (also TIME-WAIT: the conservative test for picking a fresh port)
port_in_use() {
  local port=$1
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Htan "( sport = :$port )" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

# port_listening PORT: true if a server listens on TCP port PORT (what makes our own
# listen fail; PostgreSQL and Erlang set SO_REUSEADDR, so TIME-WAIT does not)
port_listening() {
  local port=$1
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Hltn "( sport = :$port )" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

check_port_number() {
  if ! [[ $1 =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt 65535 ]; then die "not a TCP port: '$1'"; fi
}

# free_port: a TCP port on 127.0.0.1 nobody uses, below the kernel's ephemeral range
# (so outgoing connections cannot take it meanwhile) and low enough that RabbitMQ's
# CLI range (dist port + 10000..10010) still fits when it is used as a dist port.
free_port() {
  local i port
  for (( i = 0; i < 500; i++ )); do
    port=$(( 15000 + (RANDOM * 32768 + RANDOM) % 17000 ))
    if ! port_in_use "$port"; then
      echo "$port"
      return 0
    fi
  done
  die "no free TCP port found"
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" 2>/dev/null || true; }

# wait_http URL TIMEOUT_SECS [PID [LOG]]: poll URL until HTTP 200, dots on stderr.
# With PID: give up as soon as that process has died (and show LOG).
wait_http() {
  local url=$1 timeout=$2 pid=${3:-} log=${4:-} start code=''
  start=$(now_ms)
  printf '    waiting for %s ' "$url"
  while :; do
    code=$(http_code "$url")
    if [ "$code" = 200 ]; then
      printf ' ok (%s)\n' "$(elapsed "$start")"
      return 0
    fi
    if [ -n "$pid" ] && ! pid_alive "$pid"; then
      printf ' process %s exited\n' "$pid"
      [ -z "$log" ] || show_log "$log"
      return 1
    fi
    if (( $(now_ms) - start >= timeout * 1000 )); then
      printf ' timed out after %ss (last HTTP status: %s)\n' "$timeout" "${code/#000/no answer}"
      [ -z "$log" ] || show_log "$log"
      return 1
    fi
    printf '.'
    sleep 0.5
  done
}

# ---------------------------------------------------------------- packages

# apt_install PKG...: apt-get update (once per process) and install. A temporary
# policy-rc.d keeps the packages' init scripts from starting system-wide servers
# (a system RabbitMQ or PostgreSQL on the default ports would clash with ours).
MOA_APT_UPDATED=
apt_install() {
  [ "$(id -u)" -eq 0 ] || die "missing packages: $* (run as root, or apt-get install -y $*)"
  command -v apt-get >/dev/null 2>&1 || die "missing packages: $* (and no apt-get)"
  if [ -z "$MOA_APT_UPDATED" ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    MOA_APT_UPDATED=1
  fi
  say "apt-get install -y $*"
  local policy=/usr/sbin/policy-rc.d ours=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    ours=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" || rc=$?
  [ -z "$ours" ] || rm -f "$policy"
  [ "$rc" -eq 0 ] || die "apt-get install $* failed (exit $rc)"
}

RABBITMQ_SERVER_BIN=/usr/lib/rabbitmq/bin/rabbitmq-server

ensure_rabbitmq_installed() {
  [ -x "$RABBITMQ_SERVER_BIN" ] || apt_install rabbitmq-server
  [ -x "$RABBITMQ_SERVER_BIN" ] || die "rabbitmq-server installed but $RABBITMQ_SERVER_BIN is missing"
}

# pg_bin NAME: path of a PostgreSQL server program (PATH first, then the newest
# /usr/lib/postgresql/*/bin)
pg_bin() {
  local name=$1 dir
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return 0
  fi
  while read -r dir; do
    if [ -x "$dir/$name" ]; then
      echo "$dir/$name"
      return 0
    fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
  return 1
}

ensure_pg_installed() {
  pg_bin initdb >/dev/null || apt_install postgresql
  pg_bin initdb >/dev/null || die "PostgreSQL server programs (initdb, pg_ctl) not found"
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
}

ensure_curl_installed() {
  command -v curl >/dev/null 2>&1 || apt_install curl
}

# ---------------------------------------------------------------- local stack (scripts/up & co)

: "${ITEM_DB_PORT:=5432}" "${ALARM_DB_PORT:=5433}" "${USER_DB_PORT:=5434}"
: "${AMQP_PORT:=5672}" "${RABBIT_MGMT_PORT:=15672}" "${RABBIT_DIST_PORT:=25672}"
: "${ITEM_HTTP_PORT:=5001}" "${ALARM_HTTP_PORT:=6001}" "${USER_HTTP_PORT:=7001}"

# MOA_RUN_DIR: where the stack keeps its state (data, logs, pid files); overridable so a
# test can run a whole scripts/up stack of its own in a temporary directory
MOA_RUN_DIR=$(realpath -m -- "${MOA_RUN_DIR:-$MOA_REPO_DIR/.run}")
MOA_COMPONENTS=(item-db alarm-db user-db rabbitmq item alarm user)
# shellcheck disable=SC2034
MOA_SERVICES=(item alarm user)

is_service() { case $1 in item | alarm | user) return 0 ;; *) return 1 ;; esac; }
is_db() { case $1 in item-db | alarm-db | user-db) return 0 ;; *) return 1 ;; esac; }

# contains WORD LIST...: true if WORD is one of LIST
contains() {
  local w=$1 x
  shift
  for x in "$@"; do [ "$x" = "$w" ] && return 0; done
  return 1
}

# select_components ARG...: sets MOA_SELECTED to the named components (all when none
# are named), in start order
select_components() {
  local c
  for c in "$@"; do
    contains "$c" "${MOA_COMPONENTS[@]}" || die "unknown component '$c' (known: ${MOA_COMPONENTS[*]})"
  done
  MOA_SELECTED=()
  for c in "${MOA_COMPONENTS[@]}"; do
    if [ $# -eq 0 ] || contains "$c" "$@"; then MOA_SELECTED+=("$c"); fi
  done
}

component_port() {
  case $1 in
    item-db) echo "$ITEM_DB_PORT" ;;
    alarm-db) echo "$ALARM_DB_PORT" ;;
    user-db) echo "$USER_DB_PORT" ;;
    rabbitmq) echo "$AMQP_PORT" ;;
    item) echo "$ITEM_HTTP_PORT" ;;
    alarm) echo "$ALARM_HTTP_PORT" ;;
    user) echo "$USER_HTTP_PORT" ;;
  esac
}

db_name() { echo "${1%-db}_db"; }          # item-db | item -> item_db
pg_dir() { echo "$MOA_RUN_DIR/pg/${1%-db}"; } # item-db | item -> .run/pg/item
rabbit_dir() { echo "$MOA_RUN_DIR/rabbitmq"; }
pid_file() { echo "$MOA_RUN_DIR/pids/$1.pid"; }
log_file() { echo "$MOA_RUN_DIR/logs/$1.log"; }
service_bin() { echo "${MOA_BIN_DIR:-$MOA_REPO_DIR/target/release}/$1"; }

# pids_in_dir DIR: live (not zombie) processes whose working directory is DIR. Every
# PostgreSQL process (postmaster, backends, background workers) runs in its data directory.
pids_in_dir() {
  local dir=$1 p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$(readlink "$p/cwd" 2>/dev/null)" = "$dir" ] && pid_alive "$pid" && echo "$pid"
  done
  return 0
}

# pg_pid DIR: pid of the postmaster whose data dir is DIR/data, if it runs. The pid in a
# stale postmaster.pid (left by kill -9) may have been reused by another process: where
# /proc tells (as root), the process must also run in that data directory.
pg_pid() {
  local pid cwd
  pid=$(read_pid "$1/data/postmaster.pid")
  pid_alive "$pid" || return 0
  if cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null); then
    [ "$cwd" = "$(realpath -m -- "$1/data")" ] || return 0
  fi
  echo "$pid"
}

# rabbit_pid DIR: pid of the RabbitMQ node started in DIR, if it runs: its rabbitmq-server
# start script (leader of the process group, stops beam.smp gracefully on SIGTERM) while the
# script's beam.smp runs. After a kill -9 of beam.smp the script may still be alive for a
# moment: that is no node. After a kill -9 of the script beam.smp runs on alone (reparented
# to PID 1): that is the node, found by its environment.
rabbit_pid() {
  local mnesia=$1/mnesia pid child p
  pid=$(read_pid "$1/rabbit.pid")
  if pid_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = rabbitmq-server ] &&
    grep -qzxF -- "RABBITMQ_MNESIA_BASE=$mnesia" "/proc/$pid/environ" 2>/dev/null; then
    for child in $(cat "/proc/$pid/task/$pid/children" 2>/dev/null); do
      if [ "$(cat "/proc/$child/comm" 2>/dev/null)" = beam.smp ] && pid_alive "$child"; then
        echo "$pid"
        return 0
      fi
    done
  fi
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = beam.smp ] || continue
    if grep -qzxF -- "RABBITMQ_MNESIA_BASE=$mnesia" "$p/environ" 2>/dev/null && pid_alive "${p#/proc/}"; then
      echo "${p#/proc/}"
      return 0
    fi
  done
}

# service_pid NAME: pid from .run/pids/NAME.pid if that process is still our service
# (the pid file holds the pid, then the path of the binary it was started from)
service_pid() {
  local file pid bin
  file=$(pid_file "$1")
  pid=$(read_pid "$file")
  pid_alive "$pid" || return 0
  bin=$(sed -n 2p "$file")
  # guard against a reused pid: the process must run the binary we started
  if grep -qzxF -- "${bin:-$(service_bin "$1")}" "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
  fi
}

# component_pid NAME: pid of a running component, or nothing
component_pid() {
  case $1 in
    *-db) pg_pid "$(pg_dir "$1")" ;;
    rabbitmq) rabbit_pid "$(rabbit_dir)" ;;
    *) service_pid "$1" ;;
  esac
}

pg_url() { echo "postgres://postgres:postgres@127.0.0.1:$1/$2"; }
