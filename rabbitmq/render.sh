#!/bin/sh
# render.sh DOMAINS TEMPLATE: prints TEMPLATE (rabbitmq/definitions.json.in,
# rabbitmq/service-users.json.in) for the domains listed in DOMAINS (domains.tsv):
#
#   @each LINE          (a line's first word) LINE once per domain, in DOMAINS' order, the
#                       copies separated by commas; a LINE ending with a comma keeps it after
#                       the last copy too. `@each -a,b LINE` leaves out the domains a and b
#                       (those the template writes out itself)
#   @name@, @NAME@      in such a LINE: the domain's name, in lower and upper case
#   @names_re@          anywhere: every domain's name as a regular expression's alternatives,
#                       item|alarm|user
#   @events_re@         anywhere: every domain's exchange, item\\.events|alarm\\.events|...
#                       (escaped for a JSON string)
#   ${NAME}             anywhere, after the above: the value of the environment variable NAME,
#                       escaped for a JSON string. Fails, naming it, when such a variable is
#                       unset or empty: a user must never be created with a placeholder or an
#                       empty password.
#
# Used by scripts/infra rabbit-start (with the local passwords), by the e2e harness, by
# docker/rabbitmq.Dockerfile (the definitions, at build) and by the container's entrypoint
# (docker/rabbitmq-entrypoint.sh: the users, at start). POSIX sh and awk only: the rabbitmq
# image has neither python nor jq.
set -eu
[ $# -eq 2 ] || { echo "usage: render.sh DOMAINS TEMPLATE" >&2; exit 2; }
for f in "$1" "$2"; do
  [ -r "$f" ] || { echo "render.sh: cannot read $f" >&2; exit 2; }
done
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
# every occurrence of the text `from` in `s` replaced by `to` (no pattern characters)
function subst(s, from, to,    res, p) {
  res = ""
  while ((p = index(s, from)) > 0) {
    res = res substr(s, 1, p - 1) to
    s = substr(s, p + length(from))
  }
  return res s
}
function fail(msg) {
  printf "render.sh: %s\n", msg > "/dev/stderr"
  failed = 1
  exit 1
}
# the ${NAME} placeholders of a line, filled from the environment
function fill(line,    res, p, rest, q, name) {
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
    if (!(name in ENVIRON) || ENVIRON[name] == "") fail(name " is not set (needed by " FILENAME ")")
    res = res substr(line, 1, p - 1) esc(ENVIRON[name])
    line = substr(rest, q + 1)
  }
  return res line
}
function emit(line) {
  print fill(subst(subst(line, "@names_re@", names_re), "@events_re@", events_re))
}
# the domains: the first file, its first field; comments and blank lines skipped
FNR == NR {
  if ($0 ~ /^[ \t]*(#|$)/) next
  if ($1 !~ /^[a-z][a-z0-9]*$/) fail(FILENAME ":" FNR ": " $1 " is not a domain name")
  domain[++n] = $1
  names_re = names_re (n > 1 ? "|" : "") $1
  events_re = events_re (n > 1 ? "|" : "") $1 "\\\\.events"
  next
}
FNR == 1 && n == 0 { fail("no domain listed in " ARGV[1]) }
$1 == "@each" {
  indent = substr($0, 1, index($0, "@each") - 1)
  body = substr($0, index($0, "@each") + 5)
  sub(/^[ \t]+/, "", body)
  split("", skip)
  if (body ~ /^-/) {
    k = split(substr(body, 2, index(body, " ") - 2), names, ",")
    for (i = 1; i <= k; i++) skip[names[i]] = 1
    body = substr(body, index(body, " ") + 1)
  }
  last = body ~ /,[ \t]*$/
  sub(/,[ \t]*$/, "", body)
  m = 0
  for (i = 1; i <= n; i++) if (!(domain[i] in skip)) kept[++m] = domain[i]
  for (i = 1; i <= m; i++) {
    line = subst(subst(body, "@name@", kept[i]), "@NAME@", toupper(kept[i]))
    emit(indent line (i < m || last ? "," : ""))
  }
  next
}
{ emit($0) }
END { if (failed) exit 1 }
' "$1" "$2"
