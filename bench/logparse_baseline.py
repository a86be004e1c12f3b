#!/usr/bin/env python3
"""The runcrawler way, as the baseline for bench/logparse-speed: the same rules
(logparse/rules/builtin.toml), compiled with Python's `re`, applied line by line.

Every line of the file is tried against every single-line pattern of every rule (a line-by-line
parser cannot know which code wrote the file before it has read it); patterns that cross line
ends (they say \\n) are run over the whole text, for the codes found and the generic section,
as the Rust library does. Then the same verdict: the code's own success marker decides, a
failure marker counts only if no success marker follows it (and, for a code's own markers, if it
comes after the code's banner), the most telling marker wins.

usage: logparse_baseline.py [--rules builtin.toml] FILE...
prints one JSON line per file: program, outcome, category, evidence, facts, seconds.
"""

import argparse
import json
import re
import sys
import time
import tomllib

MAX_LINE = 4096
PRIORITY = {
    "time_limit": 0, "out_of_memory": 0, "node_failure": 0, "cancelled": 0,
    "numerical_instability": 1, "input_error": 1, "file_not_found": 1, "io_error": 1, "launch_failure": 1,
    "environment_error": 1,
    "segfault": 2, "signal": 2,
    "mpi_abort": 3, "unknown": 3, "truncated": 3,
}
RANK_TAG = re.compile(r"^\s*(?:\[(?:\d+(?:,\d+)*|[^\]\s:]+:\d+)\](?:<std(?:out|err)>:)?\s*)+")


def strings(v):
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


class Pat:
    def __init__(self, src):
        self.src = src
        self.multiline = "\\n" in src
        self.re = re.compile(src, re.M)


def compile_rules(doc):
    def section(d, name):
        return {
            "name": name,
            "label": d.get("label"),
            "detect": [Pat(s) for s in strings(d.get("detect"))],
            "success": [Pat(s) for s in strings(d.get("success"))],
            "main": re.compile(d["main"]) if d.get("main") else None,
            "failures": [
                dict(pat=Pat(f["pattern"]), category=f["category"], priority=f.get("priority"),
                     tail_lines=f.get("tail_lines"),
                     despite_success=f.get("despite_success", False),
                     when=[(re.compile(w["match"], re.M), w["category"], w.get("priority")) for w in f.get("when", [])])
                for f in d.get("failure", [])
            ],
            "fields": [dict(pat=Pat(f["pattern"]), pick=f.get("pick", "first"), count=f.get("count"),
                            units=f.get("units", {}), set=f.get("set", {}), convert=f.get("convert", {}))
                       for f in d.get("field", [])],
        }
    generic = section(doc.get("generic", {}), "generic")
    programs = [section(p, p["name"]) for p in doc.get("program", []) if p.get("enabled", True)]
    return generic, programs


def render(template, groups):
    try:
        return re.sub(r"\{(\w+)\}", lambda m: groups[m.group(1)] if groups[m.group(1)] is not None else "", template)
    except KeyError:
        return None


def duration(s):
    s = s.strip()
    try:
        return float(s)
    except ValueError:
        pass
    if ":" in s:
        days, _, rest = s.rpartition("-") if "-" in s else ("0", "", s)
        total = 0.0
        for part in rest.split(":"):
            total = total * 60 + float(part)
        return float(days or 0) * 86400 + total
    total = 0.0
    for num, unit in re.findall(r"([\d.]+)\s*([dhms])", s):
        total += float(num) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[unit]
    return total


def convert(kind, v):
    v = v.strip()
    if kind == "duration":
        return "%g" % duration(v)
    if kind == "product":
        p = 1
        for x in re.split(r"[*xX]", v):
            p *= int(x)
        return str(p)
    if kind == "lower":
        return v.lower()
    return v


def outputs(field, groups):
    out = []
    for k, v in groups.items():
        if k.startswith("_") or v is None or k in field.get("set", {}) or k == "evidence":
            continue
        out.append((k, v))
    for k, t in field.get("set", {}).items():
        r = render(t, groups)
        if r is not None:
            out.append((k, r))
    res = []
    for k, v in out:
        if k in field.get("convert", {}):
            try:
                v = convert(field["convert"][k], v)
            except (ValueError, KeyError):
                continue
        unit = field.get("units", {}).get(k)
        res.append((k, v.strip(), render(unit, groups) if unit else None))
    return res


def analyze(text, generic, programs):
    lines = re.split(r"\r\n|\r|\n", text)
    lines = [l[:MAX_LINE] for l in lines]
    offsets = []
    pos = 0
    for l in lines:
        offsets.append(pos)
        pos += len(l) + 1
    joined = "\n".join(lines)

    # Line by line: every single-line pattern of every rule on every line.
    singles = []
    for sec in [generic] + programs:
        for p in sec["detect"] + sec["success"] + [f["pat"] for f in sec["failures"]] + [f["pat"] for f in sec["fields"]]:
            if not p.multiline:
                singles.append(p)
    hits = {id(p): [] for p in singles}
    for i, line in enumerate(lines):
        for p in singles:
            if p.re.search(line):
                hits[id(p)].append(i)

    def line_of(off):
        lo, hi = 0, len(offsets) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if offsets[mid] <= off:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def matches(p):
        if not p.multiline:
            return [(i, p.re.search(lines[i])) for i in hits[id(p)]]
        return [(line_of(m.start()), m) for m in p.re.finditer(joined)]

    # Detection, success.
    dets = []
    for sec in programs:
        found = [m for p in sec["detect"] for m in matches(p)]
        if not found:
            continue
        found.sort(key=lambda x: x[0])
        succ = [i for p in sec["success"] for i, _ in matches(p)]
        first_m = found[0][1]
        # A detect pattern without the label's groups names the program by its rule's name.
        label = (render(sec["label"], first_m.groupdict()) if sec["label"] else None) or sec["name"]
        # The last main run (rules' `main`: a regex on the tool's label) and whether its success
        # marker shows before the next tool starts.
        main = None
        if sec["main"] is not None and sec["label"]:
            labels = [(i, render(sec["label"], m.groupdict())) for i, m in found]
            labels = [(i, l) for i, l in labels if l]
            mains = [k for k, (_, l) in enumerate(labels) if sec["main"].search(l)]
            if mains:
                k = mains[-1]
                start, end = labels[k][0], labels[k + 1][0] if k + 1 < len(labels) else len(lines)
                main = (labels[k][1], any(start <= s < end for s in succ))
                label = main[0]
        dets.append(dict(sec=sec, first=found[0][0], last=found[-1][0], success=max(succ) if succ else None,
                         label=label, groups=first_m.groupdict(), main=main))
    dets.sort(key=lambda d: d["first"])

    # Failure markers that count.
    cands = []

    def failures(sec, start, is_generic, first=None):
        for order, f in enumerate(sec["failures"]):
            lo = first if (f["despite_success"] and first is not None) else start
            found = [(i, m) for i, m in matches(f["pat"]) if i >= lo]
            if f["tail_lines"] is not None:
                # Only the last match, and only with at most tail_lines non-blank lines after it.
                found = found[-1:]
                if found and sum(1 for l in lines[found[0][0] + 1:] if l.strip()) > f["tail_lines"]:
                    found = []
            for i, m in found:
                cat, prio = f["category"], f["priority"]
                # `when` looks at the whole lines the match covers.
                seen = "\n".join(lines[i:line_of(m.end()) + 1]) if f["pat"].multiline else lines[i]
                for wre, wcat, wprio in f["when"]:
                    if wre.search(seen):
                        cat = wcat
                        prio = wprio if wprio is not None else prio
                        break
                gd = m.groupdict()
                if gd.get("evidence") is not None:
                    ev_line, ev = line_of(m.start("evidence")) if f["pat"].multiline else i, gd["evidence"]
                else:
                    ev_line, ev = i, lines[i]
                prio = prio if prio is not None else PRIORITY[cat]
                cands.append((prio, is_generic, ev_line, order, cat, RANK_TAG.sub("", ev).strip()))
                break

    for d in dets:
        start = max(d["first"], d["success"] + 1 if d["success"] is not None else 0)
        failures(d["sec"], start, False, d["first"])
    any_first = min((d["first"] for d in dets), default=0)
    any_success = max((d["success"] for d in dets if d["success"] is not None), default=None)
    failures(generic, max(any_first, any_success + 1 if any_success is not None else 0), True)
    cands.sort(key=lambda c: c[:4])

    result = {"program": dets[0]["label"] if dets else None, "programs_seen": [d["label"] for d in dets],
              "outcome": "unknown", "category": None, "evidence": None}
    if cands:
        result.update(outcome="failed", category=cands[0][4], evidence=cands[0][5])
    elif dets:
        judged = [d for d in dets if d["sec"]["success"]]
        if judged and all(d["main"][1] if d["main"] else d["success"] is not None and d["success"] > d["last"]
                          for d in judged):
            result["outcome"] = "success"
        elif judged:
            result.update(outcome="incomplete", category="truncated")

    # Facts.
    facts = {}
    for n, d in enumerate(dets):
        prefix = "" if n == 0 else re.sub(r"[^a-z0-9]", "_", d["sec"]["name"].lower()) + "."
        for k, v in d["groups"].items():
            if not k.startswith("_") and v is not None:
                facts.setdefault(prefix + k, (v.strip(), None))
        for field in d["sec"]["fields"]:
            collect(field, matches(field["pat"]), facts, prefix)
    for field in generic["fields"]:
        collect(field, matches(field["pat"]), facts, "")
    result["facts"] = {k: v for k, v in facts.items()}
    return result


def collect(field, ms, facts, prefix):
    if not ms:
        return
    if field["pick"] == "sum":
        sums = {}
        for _, m in ms:
            for k, v in m.groupdict().items():
                if not k.startswith("_") and v is not None:
                    try:
                        sums[k] = sums.get(k, 0.0) + float(v)
                    except ValueError:
                        pass
        for k, v in sums.items():
            facts.setdefault(prefix + k, ("%.6g" % v, field["units"].get(k)))
    else:
        m = ms[0][1] if field["pick"] == "first" else ms[-1][1]
        for k, v, u in outputs(field, m.groupdict()):
            facts.setdefault(prefix + k, (v, u))
    if field["count"]:
        facts.setdefault(prefix + field["count"], (str(len(ms)), None))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", default=None)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    rules_path = args.rules or __file__.rsplit("/", 2)[0] + "/logparse/rules/builtin.toml"
    with open(rules_path, "rb") as f:
        generic, programs = compile_rules(tomllib.load(f))
    for path in args.files:
        with open(path, "rb") as f:
            data = f.read()
        t0 = time.perf_counter()
        text = data.decode("utf-8", errors="replace")
        res = analyze(text, generic, programs)
        res["seconds"] = time.perf_counter() - t0
        res["file"] = path
        print(json.dumps(res))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
