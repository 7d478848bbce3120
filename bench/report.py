#!/usr/bin/env python3
"""Turns the scenario results of bench/run.sh into one JSON file and a Markdown table.

  report.py RESDIR OUT.json          combine RESDIR/*.json, write OUT.json, print the table
  report.py --readme README RESULT.json PNG
                                     put the table of RESULT.json into README between
                                     the <!-- bench:latest:begin/end --> markers
"""
import json
import os
import statistics
import sys


def load(resdir, name):
    path = os.path.join(resdir, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def fmt(v, digits=3):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}g}"


def row(scenario, measure, base, proxy, ratio, target, met, unit=""):
    return {
        "scenario": scenario,
        "measure": measure,
        "direct": base,
        "proxy": proxy,
        "ratio": ratio,
        "target": target,
        "met": met,
        "unit": unit,
    }


def s1_rows(s1):
    if not s1:
        return []
    runs = s1["runs"]
    d = statistics.median(r["direct_s"] for r in runs)
    p = statistics.median(r["proxy_s"] for r in runs)
    ratio = p / d if d > 0 else None
    n = len(runs)
    return [row(1, f"catch-up after the writers' end, s (median of {n})", d, p, ratio,
                "proxy ≤ 1.05× direct", ratio is not None and ratio <= 1.05)]


def s2_rows(s2):
    if not s2:
        return []
    rows = []
    by = {}
    tls = {}
    for r in s2["runs"]:
        if r.get("transport") == "tls":
            tls.setdefault(r["sinks"], []).append(r)
            continue
        by.setdefault((r.get("log_dir", "disk"), r["sinks"]), []).append(r)
    one = None
    plain = {}
    for (where, sinks) in sorted(by, key=lambda k: (k[0] != "disk", k[1])):
        runs = by[(where, sinks)]
        g = statistics.median(r["gbps_in"] for r in runs)
        cpu = statistics.median(r["proxy_cpu_s_per_gb"] for r in runs)
        n = len(runs)
        if where == "disk":
            plain[sinks] = g
        plural = "s" if sinks > 1 else ""
        if where == "disk" and sinks == 1:
            one = g
            rows.append(row(2, f"stream ingested, 1 replica, GB/s (median of {n})", None, g, None,
                            "≥ 1 GB/s", g >= 1.0))
        elif where == "disk":
            rows.append(row(2, f"stream ingested, {sinks} replicas, GB/s (median of {n})", None, g,
                            g / one if one else None, "— (ratio: to 1 replica)", None))
        else:
            rows.append(row(2, f"stream ingested, {sinks} replica{plural}, data dir on {where}, GB/s "
                               f"(median of {n})", None, g, g / one if one else None,
                            "— (context; ratio: to the disk)", None))
        rows.append(row(2, f"proxy CPU seconds per GB, {sinks} replica{plural}"
                           + (f", data dir on {where}" if where != "disk" else ""),
                        None, cpu, None, "—", None))
    # Over TLS (--tls-port, the sinks decrypting everything), side by side with plain TCP.
    for sinks in sorted(tls):
        runs = tls[sinks]
        g = statistics.median(r["gbps_in"] for r in runs)
        cpu = statistics.median(r["proxy_cpu_s_per_gb"] for r in runs)
        p = plain.get(sinks)
        ratio = g / p if p else None
        plural = "s" if sinks > 1 else ""
        goal = ("TLS ≥ 0.5× plain", ratio is not None and ratio >= 0.5) if sinks == 1 else ("— (ratio: to plain TCP)", None)
        rows.append(row(2, f"stream ingested over TLS, {sinks} replica{plural}, GB/s (median of {len(runs)}; "
                           f"plain TCP {p:.3f})" if p else f"stream ingested over TLS, {sinks} replica{plural}, GB/s",
                        None, g, ratio, goal[0], goal[1]))
        rows.append(row(2, f"proxy CPU seconds per GB over TLS, {sinks} replica{plural}", None, cpu, None, "—", None))
    return rows


def s3_rows(s3):
    if not s3 or "direct" not in s3 or "proxy" not in s3:
        return []
    d, p = s3["direct"], s3["proxy"]
    label = f"{s3['replicas']} replicas × {s3['kills_per_replica']} kills"
    bytes_ratio = d["master_bytes_sent"] / p["master_bytes_sent"] if p["master_bytes_sent"] else None
    return [
        row(3, f"master forks ({label})", d["master_forks"], p["master_forks"], None,
            "proxy: no fork after the first", p["master_forks"] <= 1),
        row(3, f"master bytes sent, MB ({label})", d["master_bytes_sent"] / 1e6,
            p["master_bytes_sent"] / 1e6, bytes_ratio, "≥ 50× fewer (ratio: direct / proxy)",
            bytes_ratio is not None and bytes_ratio >= 50),
    ]


def s4_rows(s4):
    if not s4:
        return []
    cells = {}
    for c in s4["cells"]:
        cells[(c["dataset"], c["keys"], c["replicas"], c["side"])] = c
    rows = []
    keys = sorted({(k[1], k[0], k[2]) for k in cells})
    for nkeys, dataset, n in keys:
        i = cells.get((dataset, nkeys, n, "intermediate"))
        p = cells.get((dataset, nkeys, n, "proxy"))
        imib = i["peak_rss_kb"] / 1024 if i else None
        pmib = p["peak_rss_kb"] / 1024 if p else None
        ratio = pmib / imib if (imib and pmib) else None
        rows.append(row(4, f"peak RSS, MiB: {dataset} dataset, {n} replica{'s' if n > 1 else ''}",
                        imib, pmib, ratio, "proxy ≤ 64 MiB", pmib is not None and pmib <= 64))
    return rows


def s5_rows(s5):
    if not s5:
        return []
    runs = s5["runs"]
    d = statistics.median(r["direct_s"] for r in runs)
    p = statistics.median(r["proxy_s"] for r in runs)
    ratio = p / d if d > 0 else None
    return [row(5, f"new replica, REPLICAOF → loaded, s: {s5['dataset']} dataset (median of {len(runs)})",
                d, p, ratio, "proxy ≤ 0.7× direct", ratio is not None and ratio <= 0.7)]


def s7_rows(s7):
    if not s7:
        return []
    by = {r["via"]: r for r in s7["runs"]}
    d, p, n = by["direct"], by["proxy"], by["norefresh"]
    what = f"{s7['dataset']} dataset after {s7['writes_mb']} MB of writes ({s7['refreshes']} refreshes)"
    rows = []
    for key, unit, scale, measure in (("bytes", "MB", 1e6, "MB received"), ("seconds", "s", 1, "s until equal")):
        ratio = p[key] / d[key] if d[key] > 0 else None
        rows.append(row(7, f"new replica, {measure}: {what}", d[key] / scale, p[key] / scale,
                        ratio, "proxy ≤ 1.2× direct", ratio is not None and ratio <= 1.2))
        nratio = n[key] / d[key] if d[key] > 0 else None
        rows.append(row(7, f"  the same from a proxy with --snapshot-refresh no ({unit})", d[key] / scale,
                        n[key] / scale, nratio, "(for comparison)", None))
    return rows


def s6_rows(s6):
    if not s6:
        return []
    # paired/<stream>/<chunk>: memcpy and the normalizer timed pass for pass in
    # one benchmark; the medians of the repetitions when there are several.
    paired = {}
    for b in s6["benchmarks"]:
        if b.get("error_occurred") or not b.get("run_name", b["name"]).startswith("paired/"):
            continue
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                paired[b["run_name"]] = b
        else:
            paired.setdefault(b.get("run_name", b["name"]), b)
    reps = max((b.get("repetitions", 1) for b in s6["benchmarks"]), default=1)
    rows = []
    order = ["realistic", "realistic-multibulk-select", "set-3B", "set-30B", "set-300B"]
    for stream in order:
        for chunk in (16384, 65536):
            p = paired.get(f"paired/{stream}/{chunk}")
            if p is None:
                continue
            m, n = p["memcpy_Bps"], p["normalizer_Bps"]
            ratio = n / m if m else None
            main = stream == "realistic"
            rows.append(row(6, f"normalizer vs memcpy, GB/s: {stream} stream, {chunk // 1024} KB chunks"
                               + (f" (median of {reps})" if reps > 1 else ""),
                            m / 1e9, n / 1e9, ratio, "≥ 25% of memcpy" if main else "— (context)",
                            (ratio is not None and ratio >= 0.25) if main else None))
    return rows


HEADER = ("| # | measure | direct / intermediate / memcpy | proxy | ratio | target | met |\n"
          "|---|---|---:|---:|---:|---|---|\n")


def table(rows):
    out = HEADER
    for r in rows:
        met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
        v = r["ratio"]
        # Ratios near a threshold get their third decimal (1.046 is not 1.05).
        ratio = (f"{v:.3f}×" if 0.5 <= v < 10 else fmt(v) + "×") if v is not None else "—"
        out += (f"| {r['scenario']} | {r['measure']} | {fmt(r['direct'])} | {fmt(r['proxy'])} | "
                f"{ratio} | {r['target']} | {met} |\n")
    return out


def machine_line(meta):
    m = meta["machine"]
    kind = "quick run (`--quick`)" if meta["quick"] else "full run"
    return (f"{kind} {meta['stamp']}, commit {meta['commit']}, {meta['seconds']} s; machine: "
            f"{m['nproc']} cores ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}, Redis {m['redis']}; "
            f"load average before/after: {m['loadavg_before']} / {m['loadavg_after']}")


def combine(resdir, out_path):
    meta = load(resdir, "meta.json")
    parts = {f"s{i}": load(resdir, f"s{i}.json") for i in range(1, 8)}
    rows = (s1_rows(parts["s1"]) + s2_rows(parts["s2"]) + s3_rows(parts["s3"]) + s4_rows(parts["s4"])
            + s5_rows(parts["s5"]) + s6_rows(parts["s6"]) + s7_rows(parts["s7"]))
    doc = dict(meta)
    doc["table"] = rows
    doc["scenarios"] = {k: v for k, v in parts.items() if v is not None}
    if doc["scenarios"].get("s6"):
        # Keep the benchmark figures, not Google Benchmark's whole context.
        s6 = doc["scenarios"]["s6"]
        doc["scenarios"]["s6"] = {
            "context": {k: s6["context"].get(k) for k in ("num_cpus", "mhz_per_cpu", "library_build_type")},
            "benchmarks": [{k: b.get(k) for k in ("name", "run_name", "run_type", "aggregate_name", "repetitions",
                                                  "real_time", "cpu_time", "time_unit", "iterations",
                                                  "bytes_per_second", "commands_per_s", "avg_command_bytes",
                                                  "memcpy_Bps", "normalizer_Bps", "ratio")}
                           for b in s6["benchmarks"]],
        }
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(machine_line(meta))
    print()
    print(table(rows), end="")
    missed = [r for r in rows if r["met"] is False]
    print()
    if missed:
        print("Targets missed: " + "; ".join(f"scenario {r['scenario']}: {r['measure']}" for r in missed))
    else:
        print("Every target met.")


def image_path(readme_path, png):
    """The plot's path as the README at readme_path links it."""
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", png)
    return os.path.relpath(results, os.path.dirname(os.path.abspath(readme_path)))


def readme(readme_path, result_path, png):
    with open(result_path) as f:
        doc = json.load(f)
    missed = [r for r in doc["table"] if r["met"] is False]
    verdict = ("Targets missed in this run: " + "; ".join(f"scenario {r['scenario']}, {r['measure']}" for r in missed)
               if missed else "Every target met in this run.")
    block = (f"<!-- bench:latest:begin (written by bench/run.sh) -->\n"
             f"Latest {machine_line(doc)}.\n\n{table(doc['table'])}\n{verdict}{' (Why: see the notes in bench/README.md.)' if missed else ''}\n\n"
             f"Figures: `bench/results/{os.path.basename(result_path)}`; "
             f"scenario 3's lag plot: `bench/results/{png}`:\n\n"
             f"![scenario 3: replica lag, direct against through the proxy]({image_path(readme_path, png)})\n"
             f"<!-- bench:latest:end -->")
    with open(readme_path) as f:
        text = f.read()
    begin = text.find("<!-- bench:latest:begin")
    end = text.find("<!-- bench:latest:end -->")
    if begin < 0 or end < 0:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = text[:begin] + block + text[end + len("<!-- bench:latest:end -->"):]
    with open(readme_path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--readme":
        readme(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 3:
        combine(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
