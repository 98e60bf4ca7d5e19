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

# The helpers that look at processes and files use shell builtins only (read, not cat or head):
# they run in loops over /proc, and under a load average of 40 each fork cost ~40 ms (a scan
# of 339 processes with one cat each took 15 s; `scripts/up item-1` in the cluster test ran
# several such scans).

# read_first FILE: FILE's first line, or nothing (no error) when it cannot be read
read_first() {
  local line=''
  { IFS= read -r line <"$1"; } 2>/dev/null || true
  printf '%s' "$line"
}

# proc_has_env PID ENTRY: true if process PID's environment holds ENTRY (NAME=value) exactly.
# (Read with `read`, not grep: rabbit_pid asks it of every beam.smp on the machine, and a
# machine running other tests has dozens; at a load average of 70 each grep took ~1 s.)
proc_has_env() {
  local entry
  while IFS= read -r -d '' entry; do
    [ "$entry" != "$2" ] || return 0
  done 2>/dev/null <"/proc/$1/environ"
  return 1
}

# pid_alive PID: true if PID runs. A zombie counts as gone: orphans are reparented to
# PID 1, which need not reap them promptly (in this VM it takes ~1.5 s).
pid_alive() {
  local stat=''
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ]
}

# read_pid FILE: the pid on the first line of FILE, or nothing
read_pid() {
  local line=''
  { IFS= read -r line <"$1"; } 2>/dev/null || true
  printf '%s' "${line//[^0-9]/}"
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

# The domains, from domains.tsv (the one list of them: docs/architecture.md, "Adding an entity
# kind"): MOA_SERVICES their names in the file's order, and for each domain NAME the defaults of
# NAME_HTTP_PORT and NAME_DB_PORT (the file's) and NAME_INSTANCE_PORT (NAME_HTTP_PORT + 100),
# each kept when the environment sets it. Read with builtins only (see above: no fork per line).
MOA_DOMAINS_FILE=$MOA_REPO_DIR/domains.tsv
MOA_SERVICES=()
load_domains() {
  local name http db rest var line=0
  [ -r "$MOA_DOMAINS_FILE" ] || die "cannot read $MOA_DOMAINS_FILE (the list of domains)"
  while read -r name http db rest; do
    line=$(( line + 1 ))
    case $name in '' | '#'*) continue ;; esac
    [[ $name =~ ^[a-z][a-z0-9]*$ && $http =~ ^[0-9]+$ && $db =~ ^[0-9]+$ && -z $rest ]] ||
      die "$MOA_DOMAINS_FILE:$line: not 'name http_port db_port' (name: lower-case letters and digits)"
    MOA_SERVICES+=("$name")
    var=${name^^}_HTTP_PORT
    printf -v "$var" '%s' "${!var:-$http}"
    http=${!var}
    var=${name^^}_DB_PORT
    printf -v "$var" '%s' "${!var:-$db}"
    var=${name^^}_INSTANCE_PORT
    printf -v "$var" '%s' "${!var:-$(( http + 100 ))}"
  done <"$MOA_DOMAINS_FILE"
  [ ${#MOA_SERVICES[@]} -gt 0 ] || die "$MOA_DOMAINS_FILE lists no domain"
}
load_domains
: "${AMQP_PORT:=5672}" "${RABBIT_MGMT_PORT:=15672}" "${RABBIT_DIST_PORT:=25672}"

# MOA_RUN_DIR: where the stack keeps its state (data, logs, pid files); overridable so a
# test can run a whole scripts/up stack of its own in a temporary directory
MOA_RUN_DIR=$(realpath -m -- "${MOA_RUN_DIR:-$MOA_REPO_DIR/.run}")

# ---------------------------------------------------------------- topology (docs/deployment.md)
#
# MOA_NODES RabbitMQ nodes, MOA_INSTANCES instances of each service and MOA_PG_STANDBYS
# standbys of each domain's PostgreSQL. With one node, one instance and no standby (the
# default) the components are the classic ones: item-db alarm-db user-db rabbitmq item alarm
# user. With several nodes they are rabbitmq-1..N (a RabbitMQ cluster); with several instances
# item-1..M, alarm-1..M, user-1..M on ports of their own and `lb`, an HAProxy on the usual
# service ports; with standbys pg-monitor (pg_auto_failover's monitor) and item-db-1..S+1,
# alarm-db-1.., user-db-1.. (member 1 on ITEM_DB_PORT, member k on ITEM_DB_PORT + 10 (k - 1)).
# scripts/up records the topology in $MOA_RUN_DIR/topology, so a later `scripts/up item-1` or
# `scripts/down` knows it without flags. Precedence: scripts/up's flags, then
# MOA_RABBITMQ_NODES / MOA_INSTANCES / MOA_PG_STANDBYS, then the recorded topology, then 1/1/0.

topology_file() { echo "$MOA_RUN_DIR/topology"; }

# set_topology NODES INSTANCES [STANDBYS]: fixes the topology and the component list
set_topology() {
  local n=$1 m=$2 sb=${3:-0} i s d
  [[ $n =~ ^[1-9][0-9]?$ ]] || die "RabbitMQ nodes: '$n' is not a number from 1 to 99"
  [[ $m =~ ^[1-9][0-9]?$ ]] || die "instances: '$m' is not a number from 1 to 99"
  [[ $sb =~ ^[0-2]$ ]] || die "PostgreSQL standbys: '$sb' is not 0, 1 or 2"
  MOA_NODES=$n
  MOA_INSTANCES=$m
  MOA_PG_STANDBYS=$sb
  MOA_COMPONENTS=()
  if [ "$sb" -eq 0 ]; then
    for d in "${MOA_SERVICES[@]}"; do MOA_COMPONENTS+=("$d-db"); done
  else
    MOA_COMPONENTS+=(pg-monitor)
    for d in "${MOA_SERVICES[@]}"; do
      for (( i = 1; i <= sb + 1; i++ )); do MOA_COMPONENTS+=("$d-db-$i"); done
    done
  fi
  if [ "$n" -eq 1 ]; then
    MOA_COMPONENTS+=(rabbitmq)
  else
    for (( i = 1; i <= n; i++ )); do MOA_COMPONENTS+=("rabbitmq-$i"); done
  fi
  for s in "${MOA_SERVICES[@]}"; do
    if [ "$m" -eq 1 ]; then
      MOA_COMPONENTS+=("$s")
    else
      for (( i = 1; i <= m; i++ )); do MOA_COMPONENTS+=("$s-$i"); done
    fi
  done
  [ "$m" -eq 1 ] || MOA_COMPONENTS+=(lb)
}

# recorded_topology: "NODES INSTANCES STANDBYS" of the stack in $MOA_RUN_DIR, or nothing
recorded_topology() {
  local f sb
  f=$(topology_file)
  [ -r "$f" ] || return 0
  sb=$(sed -n 's/^pg_standbys=//p' "$f")
  printf '%s %s %s\n' "$(sed -n 's/^nodes=//p' "$f")" "$(sed -n 's/^instances=//p' "$f")" "${sb:-0}"
}

# record_topology: remembers the current topology in $MOA_RUN_DIR
record_topology() {
  mkdir -p "$MOA_RUN_DIR"
  printf 'nodes=%s\ninstances=%s\npg_standbys=%s\n' "$MOA_NODES" "$MOA_INSTANCES" "$MOA_PG_STANDBYS" >"$(topology_file)"
}

moa_recorded=()
read -r -a moa_recorded < <(recorded_topology) || true
set_topology "${MOA_RABBITMQ_NODES:-${moa_recorded[0]:-1}}" "${MOA_INSTANCES:-${moa_recorded[1]:-1}}" \
  "${MOA_PG_STANDBYS:-${moa_recorded[2]:-0}}"
unset moa_recorded

# The PostgreSQL members (with standbys): member k of a domain on ${DOMAIN}_DB_PORT + 10 (k - 1)
# (item-db-2 on 5442, alarm-db-2 on 5443, user-db-2 on 5444); pg_auto_failover's monitor on
# PG_MONITOR_PORT (5452).
: "${PG_MONITOR_PORT:=5452}"

# Every instance's port: ${DOMAIN}_INSTANCE_PORT + k - 1 for instance k (defaults, set by
# load_domains: 5101, 6101, 7101); RabbitMQ node i uses AMQP_PORT, RABBIT_MGMT_PORT and
# RABBIT_DIST_PORT + i - 1.
# The load balancer's statistics page (HAProxy's; CSV at /stats;csv), on 127.0.0.1 only.
: "${LB_STATS_PORT:=8404}"

# is_domain NAME: true if NAME is a domain of domains.tsv (item, alarm, user)
is_domain() { contains "$1" "${MOA_SERVICES[@]}"; }
# service_domain NAME: item-2 | item -> item (nothing for a non-service)
service_domain() {
  local d=$1
  case $d in *-[0-9]*) d=${d%-*} ;; esac
  if is_domain "$d"; then echo "$d"; fi
}
# instance_index NAME: item-2 -> 2, item -> 1
instance_index() {
  case $1 in
    *-[0-9]*) echo "${1##*-}" ;;
    *) echo 1 ;;
  esac
}
is_service() { [ -n "$(service_domain "$1")" ] && [[ ! $1 =~ -db$ ]]; }
is_db() { [[ $1 == *-db ]] && is_domain "${1%-db}"; }
# a member of a domain's PostgreSQL formation (item-db-1 ...) and pg_auto_failover's monitor
is_pg_member() { [[ $1 =~ ^([a-z0-9]+)-db-[0-9]+$ ]] && is_domain "${BASH_REMATCH[1]}"; }
is_pg_monitor() { [ "$1" = pg-monitor ]; }
is_pg() { is_db "$1" || is_pg_member "$1" || is_pg_monitor "$1"; }
# pg_domain NAME: item-db | item-db-2 | item -> item
pg_domain() {
  local n=${1%-[0-9]*}
  echo "${n%-db}"
}
is_rabbit() { case $1 in rabbitmq | rabbitmq-[0-9]*) return 0 ;; *) return 1 ;; esac; }

# contains WORD LIST...: true if WORD is one of LIST
contains() {
  local w=$1 x
  shift
  for x in "$@"; do [ "$x" = "$w" ] && return 0; done
  return 1
}

# select_components ARG...: sets MOA_SELECTED to the named components (all when none
# are named), in start order. In a cluster, `rabbitmq` names every node and `item` every
# item instance (and so on).
select_components() {
  local c x names=() group
  for c in "$@"; do
    if contains "$c" "${MOA_COMPONENTS[@]}"; then
      names+=("$c")
      continue
    fi
    group=()
    for x in "${MOA_COMPONENTS[@]}"; do
      [[ $x =~ ^$c-[0-9]+$ ]] && group+=("$x")
    done
    [ ${#group[@]} -gt 0 ] ||
      die "unknown component '$c' (known: ${MOA_COMPONENTS[*]}; topology: $MOA_NODES RabbitMQ node(s), $MOA_INSTANCES instance(s) per service)"
    names+=("${group[@]}")
  done
  MOA_SELECTED=()
  for c in "${MOA_COMPONENTS[@]}"; do
    if [ $# -eq 0 ] || contains "$c" "${names[@]}"; then MOA_SELECTED+=("$c"); fi
  done
}

# rabbit_ports NAME: "AMQP MGMT DIST" of a RabbitMQ node (rabbitmq or rabbitmq-i)
rabbit_ports() {
  local i
  i=$(instance_index "$1")
  echo "$(( AMQP_PORT + i - 1 )) $(( RABBIT_MGMT_PORT + i - 1 )) $(( RABBIT_DIST_PORT + i - 1 ))"
}
# rabbit_nodename NAME: the Erlang node name scripts/infra gives the node (by its AMQP port)
rabbit_nodename() {
  local p
  read -r -a p < <(rabbit_ports "$1")
  echo "moa-${p[0]}@localhost"
}

# service_public_port DOMAIN: where clients reach the service (the instance or the load balancer)
service_public_port() {
  local var=${1^^}_HTTP_PORT
  if is_domain "$1"; then echo "${!var}"; fi
}

# lb_ports: the balancer's ports, one per domain (the services' public ports)
lb_ports() {
  local d ports=()
  for d in "${MOA_SERVICES[@]}"; do ports+=("$(service_public_port "$d")"); done
  echo "${ports[*]}"
}

component_port() {
  local d base
  case $1 in
    pg-monitor) echo "$PG_MONITOR_PORT" ;;
    rabbitmq | rabbitmq-[0-9]*) echo "$(( AMQP_PORT + $(instance_index "$1") - 1 ))" ;;
    lb) local p; p=$(lb_ports) && echo "${p// /,}" ;;
    *)
      if is_db "$1"; then
        base=${1%-db}
        base=${base^^}_DB_PORT
        echo "${!base}"
      elif is_pg_member "$1"; then
        base=$(pg_domain "$1")
        base=${base^^}_DB_PORT
        echo "$(( ${!base} + 10 * ($(instance_index "$1") - 1) ))"
      elif is_domain "$1"; then
        service_public_port "$1"
      else
        d=$(service_domain "$1")
        [ -n "$d" ] || return 0
        base=${d^^}_INSTANCE_PORT
        echo "$(( ${!base} + $(instance_index "$1") - 1 ))"
      fi
      ;;
  esac
}

db_name() { echo "$(pg_domain "$1")_db"; }  # item-db | item-db-2 | item -> item_db
# item-db | item -> .run/pg/item; item-db-2 -> .run/pg/item-db-2; pg-monitor -> .run/pg/monitor
pg_dir() {
  case $1 in
    pg-monitor) echo "$MOA_RUN_DIR/pg/monitor" ;;
    *-db-[0-9]*) echo "$MOA_RUN_DIR/pg/$1" ;;
    *) echo "$MOA_RUN_DIR/pg/${1%-db}" ;;
  esac
}
# pg_members DOMAIN: the members of the domain's formation (item-db-1 item-db-2), or item-db
pg_members() {
  local i
  if [ "$MOA_PG_STANDBYS" -eq 0 ]; then
    echo "$1-db"
  else
    for (( i = 1; i <= MOA_PG_STANDBYS + 1; i++ )); do printf '%s-db-%s\n' "$1" "$i"; done
  fi
}
# db_ports DOMAIN: the ports of every member of the domain's database, comma-separated
db_ports() {
  local ports=() m
  for m in $(pg_members "$1"); do ports+=("$(component_port "$m")"); done
  (IFS=, && echo "${ports[*]}")
}
rabbit_dir() { echo "$MOA_RUN_DIR/${1:-rabbitmq}"; } # rabbitmq-2 -> .run/rabbitmq-2
lb_dir() { echo "$MOA_RUN_DIR/lb"; }
pid_file() { echo "$MOA_RUN_DIR/pids/$1.pid"; }
log_file() { echo "$MOA_RUN_DIR/logs/$1.log"; }
service_bin() { echo "${MOA_BIN_DIR:-$MOA_REPO_DIR/target/release}/$(service_domain "$1")"; }
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}

ensure_haproxy_installed() {
  [ -x "$HAPROXY_BIN" ] || apt_install haproxy
  [ -x "$HAPROXY_BIN" ] || die "haproxy installed but $HAPROXY_BIN is missing"
}

# pids_in_dir DIR: live (not zombie) processes whose working directory is DIR. Every
# PostgreSQL process (postmaster, backends, background workers) runs in its data directory.
# One find, not a readlink per process: on 2 cores under a load average of 25 the loop of
# forks took 4.4 s for 167 processes (every rejoin of a crashed member paid it), find 0.15 s.
# (DIR comes from abs_dir: no pattern characters in it.)
pids_in_dir() {
  local dir=$1 p pid
  while read -r p; do
    pid=${p#/proc/}
    pid=${pid%/cwd}
    pid_alive "$pid" && echo "$pid"
  done < <(find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$dir" 2>/dev/null)
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
  if pid_alive "$pid" && [ "$(read_first "/proc/$pid/comm")" = rabbitmq-server ] &&
    proc_has_env "$pid" "RABBITMQ_MNESIA_BASE=$mnesia"; then
    for child in $(read_first "/proc/$pid/task/$pid/children"); do
      if [ "$(read_first "/proc/$child/comm")" = beam.smp ] && pid_alive "$child"; then
        echo "$pid"
        return 0
      fi
    done
  fi
  local comm
  for p in /proc/[0-9]*; do
    comm=''
    { read -r comm <"$p/comm"; } 2>/dev/null || true
    [ "$comm" = beam.smp ] || continue
    if proc_has_env "${p#/proc/}" "RABBITMQ_MNESIA_BASE=$mnesia" && pid_alive "${p#/proc/}"; then
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
    pg-monitor | *-db-[0-9]*) autoctl_pid "$(pg_dir "$1")" ;; # pg_autoctl, which runs postgres
    rabbitmq | rabbitmq-[0-9]*) rabbit_pid "$(rabbit_dir "$1")" ;;
    *) service_pid "$1" ;; # the services and lb (HAProxy): pid file, then the binary

  esac
}

# local_password FILE VAR DEFAULT: VAR's value in the local password file FILE (VAR=value
# lines), or DEFAULT when FILE sets none. The local stack's passwords follow a rule (a domain
# added to domains.tsv needs no line): they guard servers on 127.0.0.1 only, and the
# containers take theirs from the environment instead (docs/security.md).
local_password() {
  local value
  value=$(sed -n "s/^$2=//p" "$MOA_REPO_DIR/$1")
  echo "${value:-$3}"
}

# db_password DOMAIN OWNER|SERVICE: the local password of that role (postgres/local-passwords.env;
# by the rule <domain>-owner-local, <domain>-service-local)
db_password() {
  local_password postgres/local-passwords.env "${1^^}_DB_$2_PASSWORD" "$1-${2,,}-local"
}

# amqp_password DOMAIN: the local password of the domain's RabbitMQ user <domain>-service
# (rabbitmq/local-passwords.env; by the rule <domain>-local)
amqp_password() {
  local_password rabbitmq/local-passwords.env "${1^^}_AMQP_PASSWORD" "$1-local"
}

# db_url DOMAIN [owner]: the service's database URL as its runtime role (<domain>_service), or
# as the owner role (<domain>_owner: migrations). With standbys every member, and only the
# primary (target_session_attrs=read-write) is connected to, whichever member it is now.
db_url() {
  local hosts=() m role=service kind=SERVICE
  if [ "${2:-}" = owner ]; then role=owner kind=OWNER; fi
  local login="$1_$role:$(db_password "$1" "$kind")"
  if [ "$MOA_PG_STANDBYS" -eq 0 ]; then
    echo "postgres://$login@127.0.0.1:$(component_port "$1-db")/$(db_name "$1")"
    return 0
  fi
  for m in $(pg_members "$1"); do hosts+=("127.0.0.1:$(component_port "$m")"); done
  echo "postgres://$login@$(IFS=, && echo "${hosts[*]}")/$(db_name "$1")?target_session_attrs=read-write"
}

# ---------------------------------------------------------------- pg_auto_failover (--pg-standbys)

# autoctl_env DIR: the environment pg_autoctl runs in: its configuration, state and pid file
# live in DIR (not in the postgres user's home), so every member and the monitor are apart
autoctl_env() {
  local pgbin
  pgbin=$(pg_bindir)
  printf '%s\n' "XDG_CONFIG_HOME=$1/config" "XDG_DATA_HOME=$1/share" "XDG_RUNTIME_DIR=$1/run" \
    "PG_CONFIG=$pgbin/pg_config" "PATH=$pgbin:/usr/local/bin:/usr/bin:/bin" "LANG=C.UTF-8" "HOME=$1"
}

# autoctl_pid DIR: pid of the `pg_autoctl run` supervising the postgres in DIR/data, if it runs
autoctl_pid() {
  local pid
  pid=$(read_pid "$1/run/pg_autoctl$1/data/pg_autoctl.pid")
  pid_alive "$pid" || return 0
  [ "$(read_first "/proc/$pid/comm")" = pg_autoctl ] || return 0
  echo "$pid"
}

# pg_bindir: the directory of the server programs (pg_autoctl runs pg_controldata, pg_rewind ...
# next to pg_ctl: a symbolic link in /usr/local/bin is followed)
pg_bindir() { dirname "$(realpath -- "$(pg_bin pg_ctl)")"; }

# pg_auto_failover_package: Debian's package of pg_autoctl for the installed PostgreSQL (the
# Debian default's, 15, before any is installed)
pg_auto_failover_package() {
  local major=15
  if pg_bin pg_ctl >/dev/null; then major=$(basename "$(dirname "$(pg_bindir)")"); fi
  echo "postgresql-$major-auto-failover"
}

ensure_pg_auto_failover_installed() {
  ensure_pg_installed
  command -v pg_autoctl >/dev/null 2>&1 && return 0
  apt_install "$(pg_auto_failover_package)"
  command -v pg_autoctl >/dev/null 2>&1 || die "$(pg_auto_failover_package) installed but pg_autoctl is missing"
}

# ---------------------------------------------------------------- load balancer (HAProxy)

# lb_csv: HAProxy's statistics as CSV (one line per frontend, server and backend), or nothing
lb_csv() { curl -s --max-time 2 "http://127.0.0.1:$LB_STATS_PORT/stats;csv" 2>/dev/null || true; }

# lb_server_field INSTANCE FIELD: a field of HAProxy's CSV for instance item-1 ... (columns:
# 5 scur = requests in progress, 18 status = UP, DOWN, MAINT, "UP 1/2" ...)
lb_server_field() {
  local d
  d=$(service_domain "$1")
  lb_csv | awk -F, -v b="$d" -v s="$1" -v f="$2" '$1 == b && $2 == s { print $f }'
}

# lb_wait_up INSTANCE SECONDS: until the balancer sends requests to the instance
lb_wait_up() {
  local name=$1 secs=$2 i st
  for (( i = 0; i < secs * 10; i++ )); do
    st=$(lb_server_field "$name" 18)
    [ "$st" = UP ] && return 0
    sleep 0.1
  done
  warn "lb: $name is ${st:-unknown}, not UP, after ${secs}s"
  return 1
}

# lb_action INSTANCE ACTION: ready | drain | maint, through the stats page's admin form, in
# both backends of its service (the ready instances, and the live ones as the fallback)
lb_action() {
  local d b
  d=$(service_domain "$1")
  for b in "$d" "$d-alive"; do
    curl -s -o /dev/null --max-time 2 -d "s=$1&action=$2&b=$b" "http://127.0.0.1:$LB_STATS_PORT/stats" 2>/dev/null || true
  done
}

# ---------------------------------------------------------------- containers (podman)

# Containers run here under Debian's podman (runc, cgroupfs, no systemd) and podman-compose;
# aardvark-dns lets containers on a bridge network find each other by name, debootstrap makes
# the base image (scripts/compose-images). docs/operations.md, "Containers".
PODMAN_PACKAGES=(podman runc podman-compose aardvark-dns debootstrap)
MOA_CONTAINERS_CONF=$MOA_REPO_DIR/docker/containers.conf

# ensure_podman_installed: the packages above, and our containers.conf as the system's when
# it has none (podman reads /etc/containers/containers.conf; CONTAINERS_CONF overrides it)
ensure_podman_installed() {
  local absent=() p
  for p in "${PODMAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || absent+=("$p")
  done
  [ ${#absent[@]} -eq 0 ] || apt_install "${absent[@]}"
  if [ -z "${CONTAINERS_CONF:-}" ] && [ ! -e /etc/containers/containers.conf ]; then
    say "installing $MOA_CONTAINERS_CONF as /etc/containers/containers.conf"
    install -D -m 644 "$MOA_CONTAINERS_CONF" /etc/containers/containers.conf
  fi
}
