#!/bin/sh
# Writes the broker's only user (from RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS) as a
# definitions file beside the topology, then hands over to the image's own entrypoint.
# RabbitMQ hashes the plain password when it imports the file.
set -eu

user=${RABBITMQ_DEFAULT_USER:-}
pass=${RABBITMQ_DEFAULT_PASS:-}
if [ -z "$user" ] || [ -z "$pass" ]; then
  echo "set RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS" >&2
  exit 2
fi
if [ "$user" = guest ]; then
  echo "refusing to run with the guest account; choose another RABBITMQ_DEFAULT_USER" >&2
  exit 2
fi

# JSON string escaping of backslashes and double quotes
json_escape() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }
u=$(json_escape "$user")
p=$(json_escape "$pass")

file=/etc/rabbitmq/definitions.d/10-user.json
umask 077
cat >"$file" <<JSON
{
  "vhosts": [{"name": "/"}],
  "users": [{"name": "$u", "password": "$p", "tags": "administrator"}],
  "permissions": [{"user": "$u", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]
}
JSON
chown rabbitmq:rabbitmq "$file" 2>/dev/null || true

exec docker-entrypoint.sh "$@"
