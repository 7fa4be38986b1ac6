"""Compares this pyxs with another checkout of pyxs, round by round.

For a change to the router or the client's call path: both trees run the
same workloads of run.py on fresh C xenstored daemons, alternating in each
round so that machine noise hits both alike, and the table gives each
one's median (min-max) and the ratio this / other.

    git worktree add /tmp/pyxs-old <commit>
    python benchmarks/compare.py /tmp/pyxs-old --rounds 6
"""

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import ROOT, WORKLOADS, rate, run_once  # noqa: E402

DEFAULT = ("seq_read", "seq_write", "threaded_read", "transaction",
           "watch_events", "walk")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", help="the other pyxs checkout")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--only", nargs="*", default=list(DEFAULT))
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the workloads' sizes")
    args = parser.parse_args(argv)
    trees = (("this", ROOT), ("other", os.path.abspath(args.other)))
    print("%-14s %24s %24s %7s" % ("workload", "this", "other", "ratio"))
    for name in args.only:
        size = max(1, int(WORKLOADS[name][0] * args.scale))
        rates = {label: [] for label, _ in trees}
        for round_number in range(args.rounds):
            order = trees if round_number % 2 == 0 else trees[::-1]
            for label, tree in order:
                result = run_once(sys.executable, "pyxs", name, size,
                                  pythonpath=tree)
                rates[label].append(rate(result))
        cells = []
        for label, _ in trees:
            values = rates[label]
            cells.append("%8.0f (%6.0f-%6.0f)" % (
                statistics.median(values), min(values), max(values)))
        ratio = statistics.median(rates["this"]) / \
            statistics.median(rates["other"])
        print("%-14s %24s %24s %6.2fx" % (name, cells[0], cells[1], ratio),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
