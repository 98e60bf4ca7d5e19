#!/bin/sh
# Writes the broker's users as definitions files beside the topology, then runs the command
# (rabbitmq-server) as the rabbitmq user. RabbitMQ hashes the plain passwords when it imports
# the files.
#
#   RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS   the operator: administrator, for the
#                                                   dashboard and rabbitmqctl-like tools, and
#                                                   impersonator, for scripts/dead-letters replay
#                                                   (it re-publishes with the owner's user_id)
#   ITEM_AMQP_PASSWORD, ALARM_AMQP_PASSWORD,        the services' own users item-service,
#   USER_AMQP_PASSWORD (<DOMAIN>_AMQP_PASSWORD      alarm-service, user-service, no tag, with
#   for each domain of domains.tsv)                 the permissions of service-users.json.in
# Every one is required: no default password (docs/security.md).
#
# In a cluster (docker-compose.cluster.yml) also:
#   MOA_CLUSTER_NODES      the nodes, space-separated (rabbit@rabbitmq-1 rabbit@rabbitmq-2 ...):
#                          the cluster forms itself at boot by RabbitMQ's classic config
#                          peer discovery
#   RABBITMQ_ERLANG_COOKIE the secret the nodes (and the CLI tools) share; required then
# Once the node runs it takes a replica of every quorum queue (rabbitmq-queues grow): a quorum
# queue gets its members when it is declared, by whichever node imported the definitions
# first, and never grows by itself.
set -eu

dir=${MOA_DEFINITIONS_DIR:-/etc/rabbitmq/definitions.d}
moa=${MOA_RABBITMQ_DIR:-/etc/rabbitmq/moa}

user=${RABBITMQ_DEFAULT_USER:-}
pass=${RABBITMQ_DEFAULT_PASS:-}
if [ -z "$user" ] || [ -z "$pass" ]; then
  echo "set RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS (the operator's account)" >&2
  exit 2
fi
if [ "$user" = guest ]; then
  echo "refusing to run with the guest account; choose another RABBITMQ_DEFAULT_USER" >&2
  exit 2
fi
# a service's user is <domain>-service, for each domain of domains.tsv
case $user in
  *-service)
    if sh "$moa/is-domain.sh" "$moa/domains.tsv" "${user%-service}" 2>/dev/null; then
      echo "RABBITMQ_DEFAULT_USER must not be a service's user ($user): the operator is separate" >&2
      exit 2
    fi ;;
esac

# JSON string escaping of backslashes and double quotes
json_escape() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }
u=$(json_escape "$user")
p=$(json_escape "$pass")

umask 077
cat >"$dir/10-operator.json" <<JSON
{
  "vhosts": [{"name": "/"}],
  "users": [{"name": "$u", "password": "$p", "tags": "administrator,impersonator"}],
  "permissions": [{"user": "$u", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]
}
JSON
# fails, naming the variable, when a service's password is not set
sh "$moa/render.sh" "$moa/domains.tsv" "$moa/service-users.json.in" >"$dir/20-service-users.json.new"
mv "$dir/20-service-users.json.new" "$dir/20-service-users.json"
chown rabbitmq:rabbitmq "$dir/10-operator.json" "$dir/20-service-users.json" 2>/dev/null || true

# RabbitMQ's tools as the rabbitmq user (its cookie), called directly: Debian's wrappers in
# /usr/sbin re-quote their arguments for `su`, which breaks a multi-line `eval` expression
as_rabbitmq() {
  tool=$1
  shift
  setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups -- env HOME=/var/lib/rabbitmq \
    "/usr/lib/rabbitmq/bin/$tool" "$@"
}

if [ -n "${MOA_CLUSTER_NODES:-}" ]; then
  cookie=${RABBITMQ_ERLANG_COOKIE:-}
  if [ -z "$cookie" ]; then
    echo "set RABBITMQ_ERLANG_COOKIE: the nodes of a cluster share it (no default)" >&2
    exit 2
  fi
  conf=/etc/rabbitmq/rabbitmq.conf
  if ! grep -q '^cluster_formation' "$conf"; then
    {
      echo 'cluster_formation.peer_discovery_backend = classic_config'
      i=0
      for node in $MOA_CLUSTER_NODES; do
        i=$((i + 1))
        echo "cluster_formation.classic_config.nodes.$i = $node"
      done
    } >>"$conf"
  fi
  # the cookie as a file, for the node and the CLI tools alike (the image's own support for
  # RABBITMQ_ERLANG_COOKIE is deprecated)
  for home in /var/lib/rabbitmq /root; do
    printf '%s' "$cookie" >"$home/.erlang.cookie"
    chmod 600 "$home/.erlang.cookie"
  done
  chown rabbitmq:rabbitmq /var/lib/rabbitmq/.erlang.cookie
  unset RABBITMQ_ERLANG_COOKIE
  self=rabbit@$(hostname)
  (
    until as_rabbitmq rabbitmq-diagnostics -q check_running >/dev/null 2>&1; do sleep 5; done
    as_rabbitmq rabbitmq-queues grow "$self" all --errors-only >/dev/null 2>&1 ||
      echo "moa: rabbitmq-queues grow $self all failed; run it by hand" >&2
  ) &
fi

# Once the node runs: an election for every quorum queue that booted without a leader (on
# RabbitMQ 3.10 one declared moments before a crash can come back as a member nothing ever
# elects; rabbitmq/elect-leaderless.erl says why).
(
  until as_rabbitmq rabbitmq-diagnostics -q check_running >/dev/null 2>&1; do sleep 2; done
  if out=$(as_rabbitmq rabbitmqctl -q eval "$(cat "$moa/elect-leaderless.erl")" 2>&1); then
    [ "$out" = '[]' ] || echo "moa: started an election for the quorum queues without a leader after the boot: $out" >&2
  else
    echo "moa: could not check the quorum queues for a leader: $out" >&2
  fi
) &

exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups -- env HOME=/var/lib/rabbitmq "$@"
