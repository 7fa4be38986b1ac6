"""Benchmarks pyxs against pyxs 0.4.1 and libxenstore on a real xenstored.

Each workload runs in a child process on a fresh C xenstored started by
pyxs.testing; implementations alternate round by round so that machine
noise hits both alike. pyxs 0.4.1 is installed from PyPI into a throwaway
virtualenv (never a dependency of ours). Results: a table on stdout, a JSON
file and a PNG of throughput against thread count (drawn by plot.py with
matplotlib, from a throwaway virtualenv if need be).

    python benchmarks/run.py            # full run (a few minutes)
    python benchmarks/run.py --quick    # proves it works (CI)
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from pyxs.testing import XenStoreDaemon, find_xen  # noqa: E402

# workload: (size in a full run, size in a quick run, unit)
WORKLOADS = {
    "seq_read": (20000, 200, "reads/s"),
    "seq_write": (20000, 200, "writes/s"),
    "threaded_read": (40000, 400, "reads/s, 8 threads"),
    "transaction": (5000, 100, "transactions/s"),
    "watch_events": (20000, 200, "events/s"),
    "walk": (5000, 300, "nodes/s"),
    "big_list": (2000, 2000, "lists/s of 2000 children"),
    "idle": (1, 1, "CPU ms per s idle"),
    "pending_memory": (1000, 200, "bytes per pending request"),
    "domain_start": (300, 5, "domain starts/s (tx + 200 writes)"),
    "read_many": (500, 5, "reads/s, 200 keys at once"),
    "aio_seq_read": (20000, 200, "reads/s, pyxs.aio"),
    "aio_concurrent_read": (40000, 400, "reads/s, pyxs.aio, 8 coroutines"),
}
TARGETS = {"seq_read": 1.5, "seq_write": 1.5, "threaded_read": 3.0,
           "transaction": 1.5, "watch_events": 2.0, "walk": 5.0,
           "domain_start": 10.0}
FLOOR_WORKLOADS = ("seq_read", "walk", "domain_start", "read_many")
# Ratios against libxenstore, and against this pyxs's reference way of
# doing the same ("pyxs-seq": one call per key for the batches, the
# threaded client for pyxs.aio), with their targets (None: no target).
FLOOR_TARGETS = {"domain_start": 5.0}
SEQ_WORKLOADS = {"domain_start": None, "read_many": 8.0,
                 "aio_seq_read": 0.9, "aio_concurrent_read": 1.0}
SEQ_LABELS = {"aio_seq_read": "threaded pyxs",
              "aio_concurrent_read": "threaded pyxs, 8 threads"}
# Use Router.submit or pyxs.aio, new in this pyxs.
OURS_ONLY = ("pending_memory", "aio_seq_read", "aio_concurrent_read")
THREAD_COUNTS = (1, 2, 4, 8, 16)
# Workloads the daemon's own CPU bounds: their rows also give the daemon's
# CPU per operation and the rate it allows (no client can pass it).
CEILING_WORKLOADS = ("domain_start",)
# Workloads measured against bare loops with no library, blocking and
# asyncio: their ratio is the floor asyncio itself sets.
BARE_WORKLOADS = ("aio_seq_read",)


def upstream_python(cache):
    """A virtualenv holding pyxs 0.4.1 from PyPI; returns its python."""
    home = os.path.join(cache, "pyxs-0.4.1-venv")
    python = os.path.join(home, "bin", "python")
    if not os.path.exists(os.path.join(home, ".ready")):
        venv.create(home, with_pip=True, clear=True)
        subprocess.run([python, "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "pyxs==0.4.1"],
                       check=True)
        open(os.path.join(home, ".ready"), "w").close()
    return python


def run_once(python, impl, workload, size, threads=8, pythonpath=None):
    """Runs one workload on a fresh daemon; returns its JSON result."""
    env = dict(os.environ)
    env.update(find_xen().environ())
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    with XenStoreDaemon("xenstored") as daemon:
        env["PYXS_BENCH_DAEMON_PID"] = str(daemon.pid)
        output = subprocess.run(
            [python, os.path.join(HERE, "workloads.py"), impl,
             daemon.socket_path, workload, str(size), str(threads)],
            env=env, check=True, capture_output=True, text=True,
            timeout=600).stdout
    return json.loads(output.strip().splitlines()[-1])


def rate(result):
    if "bytes_per_request" in result:
        return result["bytes_per_request"]
    if result["operations"] == 0:  # idle: CPU milliseconds per second
        return 1000 * result["cpu_seconds"] / result["seconds"]
    return result["operations"] / result["seconds"]


def summarise(rates):
    return {"median": statistics.median(rates), "min": min(rates),
            "max": max(rates), "runs": len(rates)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, one round: proves it works")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only these workloads")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    os.makedirs(args.out, exist_ok=True)
    cache = os.environ.get("PYXS_CACHE_DIR") or os.path.join(
        os.path.expanduser("~/.cache"), "pyxs")
    os.makedirs(cache, exist_ok=True)
    ours = ("pyxs", sys.executable, ROOT)
    theirs = ("pyxs-0.4.1", upstream_python(cache), None)
    names = args.only or list(WORKLOADS)
    results = {}
    print("%-14s %12s %12s %12s %8s" % ("workload", "pyxs", "pyxs-0.4.1",
                                         "libxenstore", "ratio"))
    for name in names:
        full, quick, unit = WORKLOADS[name]
        size = quick if args.quick else full
        rates = {ours[0]: [], theirs[0]: [], "libxenstore": [],
                 "pyxs-seq": [], "bare-blocking": [], "bare-asyncio": []}
        # The daemon's CPU per operation while serving this pyxs: the
        # ceiling of a workload the daemon bounds, whatever the client.
        daemon_costs = []
        # (label, python, PYTHONPATH, implementation) of each contender,
        # in an order rotated every round so that noise hits all alike.
        contenders = [ours + ("pyxs",)]
        if name not in OURS_ONLY:
            contenders.append(theirs + ("pyxs",))
        if name in SEQ_WORKLOADS:
            contenders.append(("pyxs-seq", sys.executable, ROOT, "pyxs-seq"))
        if name in FLOOR_WORKLOADS:
            contenders.append(("libxenstore", sys.executable, None,
                               "libxenstore"))
        if name in BARE_WORKLOADS:
            contenders += [(label, sys.executable, None, label)
                           for label in ("bare-blocking", "bare-asyncio")]
        for round_number in range(rounds):
            shift = round_number % len(contenders)
            for label, python, path, impl in \
                    contenders[shift:] + contenders[:shift]:
                try:
                    result = run_once(python, impl, name, size,
                                      pythonpath=path)
                except subprocess.CalledProcessError as exc:
                    detail = (exc.stderr or "").strip().splitlines()
                    print("%s failed on %s: %s" % (label, name,
                          detail[-1] if detail else exc), file=sys.stderr)
                    continue
                rates[label].append(rate(result))
                if label == ours[0] and result.get("operations") and \
                        "daemon_cpu_seconds" in result:
                    daemon_costs.append(result["daemon_cpu_seconds"] /
                                        result["operations"])
        results[name] = {"unit": unit, "size": size, **{
            label: summarise(values) for label, values in rates.items()
            if values}}
        if name in CEILING_WORKLOADS and daemon_costs:
            results[name]["daemon_cpu_per_op"] = summarise(daemon_costs)
        print_row(name, results[name])
    scaling = {} if args.quick or "threaded_read" not in names else \
        thread_scaling(ours, theirs, rounds)
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": "%s, %s, %d cores, Python %s" % (
                  platform.node(), platform.machine(), os.cpu_count(),
                  platform.python_version()),
              "quick": args.quick, "rounds": rounds, "results": results,
              "thread_scaling": scaling}
    path = os.path.join(args.out, "benchmark.json")
    with open(path, "w") as handle:
        json.dump(report, handle, indent=2)
    print("wrote", path)
    table = os.path.join(args.out, "benchmark-table.rst")
    with open(table, "w") as handle:
        handle.write(rst_table(report))
    print("wrote", table)
    if scaling:
        plot(path, os.path.join(args.out, "threads.png"), cache)
    return 0


def print_row(name, row):
    ours = row.get("pyxs", {}).get("median")
    theirs = row.get("pyxs-0.4.1", {}).get("median")
    floor = row.get("libxenstore", {}).get("median")
    ratio = ""
    if ours and theirs:
        ratio = "%.2fx" % (theirs / ours if name == "idle" else ours / theirs)
    target = TARGETS.get(name)
    floor_text = _fmt(floor) if name in FLOOR_WORKLOADS else "-"
    if name in OURS_ONLY:
        theirs_text = "-"
    else:
        theirs_text = _fmt(theirs)
    print("%-14s %12s %12s %12s %8s %s  (%s)" % (
        name, _fmt(ours), theirs_text, floor_text, ratio,
        ">= %.1fx" % target if target else "", row["unit"]))
    more = other_ratios(name, row)
    if more:
        print("%-14s %s" % ("", more))


def other_ratios(name, row):
    """The ratios against libxenstore and pyxs-seq, for the rows that
    have targets for them (or a sequential reference)."""
    ours = row.get("pyxs", {}).get("median")
    parts = []
    for label, targets, text in (
            ("libxenstore", FLOOR_TARGETS, "libxenstore"),
            ("pyxs-seq", SEQ_WORKLOADS,
             SEQ_LABELS.get(name, "pyxs one call per key"))):
        if name not in targets:
            continue
        reference = row.get(label, {}).get("median")
        if ours and reference:
            target = targets[name]
            parts.append("%.2fx %s%s" % (
                ours / reference, text,
                " (>= %.1fx)" % target if target else ""))
    blocking = row.get("bare-blocking", {}).get("median")
    awaiting = row.get("bare-asyncio", {}).get("median")
    if blocking and awaiting:
        parts.append("a bare asyncio loop: %.2fx a bare blocking one"
                     % (awaiting / blocking))
    cost = row.get("daemon_cpu_per_op", {}).get("median")
    if ours and cost:
        parts.append("daemon CPU %.2f ms each: at most %s/s, pyxs at %.0f%%"
                     % (1000 * cost, _fmt(1 / cost), 100 * ours * cost))
    return "; ".join(parts)


def rst_table(report):
    """The results as a reStructuredText table, for docs/performance.rst."""
    lines = [
        "Measured %s on %s against C xenstored 4.17, %d rounds%s; "
        "ratio = pyxs / pyxs 0.4.1 in the same run (for ``idle``, lower "
        "CPU is better)." % (
            report["date"].replace("T", " "), report["machine"],
            report["rounds"], " (quick mode)" if report["quick"] else ""),
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - workload",
        "     - pyxs",
        "     - pyxs 0.4.1",
        "     - libxenstore",
        "     - ratio",
        "     - target",
        "     - unit",
        "     - other ratios",
    ]
    for name, row in report["results"].items():
        ours = row.get("pyxs", {}).get("median")
        theirs = row.get("pyxs-0.4.1", {}).get("median")
        floor = row.get("libxenstore", {}).get("median")
        ratio = ""
        if ours and theirs and name != "idle":
            ratio = "%.2fx" % (ours / theirs)
        target = TARGETS.get(name)
        cells = [
            "``%s``" % name, _fmt(ours),
            "-" if name in OURS_ONLY else _fmt(theirs),
            _fmt(floor) if name in FLOOR_WORKLOADS else "-", ratio or "-",
            ">= %.1fx" % target if target else "-", row["unit"],
            other_ratios(name, row) or "-"]
        lines.append("   * - " + cells[0])
        lines.extend("     - " + cell for cell in cells[1:])
    return "\n".join(lines) + "\n"


def _fmt(value):
    if value is None:
        return "fails"
    return "%.0f" % value if value >= 10 else "%.3f" % value


def thread_scaling(ours, theirs, rounds):
    curve = {}
    for label, python, path in (ours, theirs):
        curve[label] = {}
        for threads in THREAD_COUNTS:
            rates = [rate(run_once(python, "pyxs", "threaded_read",
                                   2000 * threads, threads, path))
                     for _ in range(max(1, rounds // 2))]
            curve[label][threads] = statistics.median(rates)
    return curve


def plot(report_path, png_path, cache):
    """Runs plot.py with a python that has matplotlib: this one, or a
    throwaway virtualenv that pip fills; skips the plot when neither
    works (no network)."""
    python = sys.executable
    probe = subprocess.run([python, "-c", "import matplotlib"],
                           capture_output=True)
    if probe.returncode != 0:
        home = os.path.join(cache, "plot-venv")
        python = os.path.join(home, "bin", "python")
        if not os.path.exists(os.path.join(home, ".ready")):
            venv.create(home, with_pip=True, clear=True)
            installed = subprocess.run(
                [python, "-m", "pip", "install", "-q",
                 "--disable-pip-version-check", "matplotlib"])
            if installed.returncode != 0:
                print("matplotlib cannot be installed: no plot",
                      file=sys.stderr)
                return
            open(os.path.join(home, ".ready"), "w").close()
    subprocess.run([python, os.path.join(HERE, "plot.py"), report_path,
                    png_path], check=True)
    print("wrote", png_path)


if __name__ == "__main__":
    sys.exit(main())
