#!/bin/sh
# is-domain.sh DOMAINS NAME: true if NAME is a domain listed in DOMAINS (domains.tsv: the first
# field of each line that is no comment); if not, says so on stderr, naming the domains.
# POSIX sh and awk: used where the images are built (Dockerfile, docker/postgres.Dockerfile)
# and by docker/rabbitmq-entrypoint.sh.
set -eu
[ $# -eq 2 ] || { echo "usage: is-domain.sh DOMAINS NAME" >&2; exit 2; }
exec awk -v name="$2" '
  /^[ \t]*(#|$)/ { next }
  $1 == name { found = 1 }
  { all = all " " $1 }
  END {
    if (!found) printf "%s is not a domain of %s (domains:%s)\n", (name == "" ? "\"\"" : name), FILENAME, all > "/dev/stderr"
    exit !found
  }
' "$1"
