#!/bin/sh
# render-users.sh TEMPLATE: prints TEMPLATE (rabbitmq/service-users.json) with every ${NAME}
# placeholder replaced by the value of the environment variable NAME, escaped for a JSON
# string. Fails, naming it, when such a variable is unset or empty: a user must never be
# created with a placeholder or an empty password.
#
# Used by scripts/infra rabbit-start (with rabbitmq/local-passwords.env) and by the
# container's entrypoint (docker/rabbitmq-entrypoint.sh). POSIX sh and awk only: the
# rabbitmq image has neither python nor jq.
set -eu
[ $# -eq 1 ] || { echo "usage: render-users.sh TEMPLATE" >&2; exit 2; }
[ -r "$1" ] || { echo "render-users.sh: cannot read $1" >&2; exit 2; }
exec awk '
function esc(s,    out, i, c) {
  out = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (c == "\\" || c == "\"") out = out "\\" c
    else out = out c
  }
  return out
}
{
  line = $0
  res = ""
  while ((p = index(line, "${")) > 0) {
    rest = substr(line, p + 2)
    q = index(rest, "}")
    name = substr(rest, 1, q - 1)
    if (q == 0 || name !~ /^[A-Z_][A-Z0-9_]*$/) {
      # not a placeholder: keep the text as it is
      res = res substr(line, 1, p + 1)
      line = rest
      continue
    }
    if (!(name in ENVIRON) || ENVIRON[name] == "") {
      printf "render-users.sh: %s is not set (needed by %s)\n", name, FILENAME > "/dev/stderr"
      failed = 1
      exit 1
    }
    res = res substr(line, 1, p - 1) esc(ENVIRON[name])
    line = substr(rest, q + 1)
  }
  print res line
}
END { if (failed) exit 1 }
' "$1"
