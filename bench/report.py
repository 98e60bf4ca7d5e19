#!/usr/bin/env python3
"""Helpers for scripts/bench (python3 standard library only).

  report.py drill OUTPUT LABEL        drill's output (run with --stats --nanosec, not --quiet)
                                      -> one JSON line per step on stdout
  report.py load OUTPUT LABEL         bench-load's LOAD lines -> JSON lines
  report.py table RESULTS.jsonl BASELINE_LABEL
                                      -> the markdown table, every row as a ratio to the baseline
  report.py brief < JSON-LINES        one summary line per result
  report.py cputable CPU.jsonl [RESULTS.jsonl]
                                      -> the markdown table of CPU use per run
  report.py migrations LOG SERVICE     a service's log -> one line per "applying migration" (how
                                      long until the next common::db line) and the total
  report.py splice FILE BEGIN END NEW splice NEW (a file) between the marker lines BEGIN and END
                                      of FILE (appended with the markers when they are missing)

drill prints p50 and p99 from a 2-significant-digit histogram and no p95, so the percentiles
here come from its per-request lines (one per request, exact to the nanosecond); requests per
second and failures come from its summary (failures are answers other than 2xx, and
connection errors).
"""

import json
import math
import re
import sys

LINE = re.compile(r"^(?P<name>.*?)\s+(?P<url>https?://\S+) (?P<status>\d{3})\b.*? (?P<ns>\d+)ns$")
SUMMARY_KEYS = ["Total requests", "Successful requests", "Failed requests"]


def pct(sorted_values, q):
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q * len(sorted_values))))
    return sorted_values[rank - 1]


def parse_drill(path, label):
    steps = {}  # name -> {"lat": [...], "status": {}}
    order = []
    summary = {}
    per_step_summary = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            m = LINE.match(line)
            if m:
                name = m.group("name").strip()
                if name not in steps:
                    steps[name] = {"lat": [], "status": {}}
                    order.append(name)
                s = steps[name]
                s["lat"].append(int(m.group("ns")) / 1e6)
                code = m.group("status")
                s["status"][code] = s["status"].get(code, 0) + 1
                continue
            for key in SUMMARY_KEYS + ["Requests per second", "Time taken for tests"]:
                if line.startswith(key):
                    num = re.search(r"([\d.]+)", line[len(key):])
                    if num:
                        summary[key] = float(num.group(1))
                    break
            else:
                for key in SUMMARY_KEYS:
                    idx = line.find(" " + key + " ")
                    if idx > 0:
                        name = line[:idx].strip()
                        num = re.search(r"(\d+)", line[idx + len(key) + 1:])
                        if num:
                            per_step_summary.setdefault(name, {})[key] = int(num.group(1))
    total = summary.get("Total requests", 0) or 1
    rps = summary.get("Requests per second", 0.0)
    out = []
    for name in order:
        s = steps[name]
        lat = sorted(s["lat"])
        pss = per_step_summary.get(name, {})
        n = pss.get("Total requests", len(lat))
        failed = pss.get("Failed requests", sum(c for k, c in s["status"].items() if not k.startswith("2")))
        out.append({
            "label": label if len(order) == 1 else f"{label}: {name}",
            "step": name,
            "requests": n,
            "errors": failed,
            "rps": rps * n / total,
            "p50": pct(lat, 0.50),
            "p95": pct(lat, 0.95),
            "p99": pct(lat, 0.99),
            "max": lat[-1] if lat else float("nan"),
            "statuses": s["status"],
            "secs": summary.get("Time taken for tests"),
            "source": "drill",
        })
    if len(order) > 1:
        # the plan as a whole
        lat = sorted(x for name in order for x in steps[name]["lat"])
        out.insert(0, {
            "label": f"{label} (all steps)",
            "step": "*",
            "requests": int(summary.get("Total requests", len(lat))),
            "errors": int(summary.get("Failed requests", 0)),
            "rps": rps,
            "p50": pct(lat, 0.50),
            "p95": pct(lat, 0.95),
            "p99": pct(lat, 0.99),
            "max": lat[-1] if lat else float("nan"),
            "statuses": {},
            "secs": summary.get("Time taken for tests"),
            "source": "drill",
        })
    return out


def parse_load(path, label):
    names = {"alarm_set+clear": "alarm set + clear", "alarm_set": "alarm set (POST)", "alarm_clear": "alarm clear (DELETE)",
             "item_list_cold": "cold pass (each user's first request)", "item_list_warm": "warm pass (the same users again)"}
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("LOAD "):
                continue
            kv = dict(p.split("=", 1) for p in line.split()[1:])
            name = kv["name"]
            out.append({
                # the run's own line (set+clear, wrk's only line) takes the label as it is
                "label": label if name in ("alarm_set+clear", "item_list_wrk") else f"{label}: {names.get(name, name)}",
                "step": name,
                "requests": int(kv["requests"]),
                "errors": int(kv["errors"]),
                "rps": float(kv["rps"]),
                "p50": float(kv["p50"]),
                "p95": float(kv["p95"]),
                "p99": float(kv["p99"]),
                "max": float(kv["max"]),
                "statuses": {},
                "secs": float(kv["secs"]),
                "source": "wrk" if name == "item_list_wrk" else "bench-users" if name.startswith("item_list") else "bench-load",
            })
    return out


def fmt(x, digits=2):
    if x != x:  # NaN
        return "–"
    return f"{x:.{digits}f}"


def table(path, baseline_label):
    rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    base = next((r for r in rows if r["label"] == baseline_label), None)
    base_rps = base["rps"] if base else float("nan")
    lines = [
        "| run | tool | requests | errors | req/s | × baseline | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["rps"] / base_rps if base_rps == base_rps and base_rps else float("nan")
        lines.append(
            f"| {r['label']} | {r['source']} | {r['requests']} | {r['errors']} | {r['rps']:.0f} | "
            f"{fmt(ratio)} | {fmt(r['p50'])} | {fmt(r['p95'])} | {fmt(r['p99'])} | {fmt(r['max'], 1)} |"
        )
    print("\n".join(lines))


def cputable(path, results_path=None):
    rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    requests = {}
    if results_path:
        for l in open(results_path, encoding="utf-8"):
            r = json.loads(l)
            if r["step"] in ("*", "alarm_set+clear") or not r["label"].startswith(("mix:", "alarm set + clear POST/DELETE /:")):
                requests.setdefault(r["label"].replace(" (all steps)", ""), r["requests"])
    cols = ["all", "loadgen", "item", "alarm", "user", "pg:item_db", "pg:alarm_db", "pg:user_db",
            "pg:other", "rabbitmq", "bench-baseline", "nginx"]
    cols = [c for c in cols if any(r["cpu"].get(c, 0) >= 0.5 for r in rows)]
    print("| run | " + " | ".join(cols) + " | server CPU µs/request |")
    print("|---|" + "---:|" * (len(cols) + 1))
    for r in rows:
        n = requests.get(r["label"])
        server = r["cpu"].get("all", 0) - r["cpu"].get("loadgen", 0)
        per = f"{server / 100 * r.get('secs', 0) * 1e6 / n:.0f}" if n else "–"
        print(f"| {r['label']} | " + " | ".join(f"{r['cpu'].get(c, 0):.0f}" for c in cols) + f" | {per} |")


STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z \w+ +(\S+)\] (.*)$")


def migrations(path, service):
    """How long each migration of one start took, from the log's timestamps: a migration runs
    from its "applying migration" line to the next line of common::db (the next migration, a
    function file, or "database schema up to date")."""
    from datetime import datetime

    events = []  # (time, message) of common::db lines
    first = None
    for line in open(path, encoding="utf-8", errors="replace"):
        m = STAMP.match(line)
        if not m:
            continue
        t = datetime.fromisoformat(m.group(1))
        first = first or t
        if m.group(2) == "common::db":
            events.append((t, m.group(3)))
    applied = [(i, e) for i, e in enumerate(events) if e[1].startswith("applying migration")]
    if not applied:
        print(f"{service}: no migration applied at this start")
        return
    for i, (t, msg) in applied:
        end = events[i + 1][0] if i + 1 < len(events) else None
        took = f"{(end - t).total_seconds():.1f} s" if end else "unfinished"
        print(f"{service}: {msg.replace('applying migration ', 'migration ')}: {took}")
    done = next((t for t, msg in events if msg.startswith("database schema up to date")), None)
    if done:
        print(f"{service}: schema up to date {(done - first).total_seconds():.1f} s after the first log line")


def splice(path, begin, end, new_path):
    new = open(new_path, encoding="utf-8").read().rstrip("\n") + "\n"
    try:
        text = open(path, encoding="utf-8").read()
    except FileNotFoundError:
        text = ""
    lines = text.splitlines(keepends=True)
    try:
        b = next(i for i, l in enumerate(lines) if l.strip() == begin)
        e = next(i for i, l in enumerate(lines) if l.strip() == end and i > b)
        lines = lines[: b + 1] + [new] + lines[e:]
    except StopIteration:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines += ["\n", begin + "\n", new, end + "\n"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(lines))


def main(argv):
    if len(argv) >= 3 and argv[0] == "drill":
        for r in parse_drill(argv[1], argv[2]):
            print(json.dumps(r, ensure_ascii=False))
    elif len(argv) >= 3 and argv[0] == "load":
        for r in parse_load(argv[1], argv[2]):
            print(json.dumps(r, ensure_ascii=False))
    elif argv[:1] == ["brief"]:
        for l in sys.stdin:
            r = json.loads(l)
            print(f"    {r['label']}: {r['rps']:.0f} req/s, p50 {r['p50']:.2f} p95 {r['p95']:.2f} "
                  f"p99 {r['p99']:.2f} ms, errors {r['errors']}")
    elif len(argv) == 3 and argv[0] == "table":
        table(argv[1], argv[2])
    elif len(argv) in (2, 3) and argv[0] == "cputable":
        cputable(*argv[1:])
    elif len(argv) == 3 and argv[0] == "migrations":
        migrations(*argv[1:])
    elif len(argv) == 5 and argv[0] == "splice":
        splice(*argv[1:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
