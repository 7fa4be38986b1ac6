"""Draws the thread-scaling curves of a benchmark.json as a PNG.

Usage: ``python plot.py benchmark.json threads.png``. Needs matplotlib,
which run.py installs into a throwaway virtualenv when the running
interpreter lacks it: plotting is never a dependency of pyxs.
"""

import json
import sys


def main(argv):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(argv[1]) as handle:
        report = json.load(handle)
    figure, axes = plt.subplots(figsize=(6.4, 4))
    for label, curve in report["thread_scaling"].items():
        counts = sorted(int(n) for n in curve)
        axes.plot(counts, [curve[str(n)] for n in counts], marker="o",
                  label=label)
    axes.set_xscale("log", base=2)
    axes.set_xticks(counts)
    axes.set_xticklabels([str(n) for n in counts])
    axes.set_ylim(bottom=0)
    axes.set_xlabel("threads sharing one Client")
    axes.set_ylabel("reads per second")
    axes.set_title("%s\n%s" % (report["date"][:10], report["machine"]),
                   fontsize=8)
    axes.legend()
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(argv[2], dpi=100)


if __name__ == "__main__":
    main(sys.argv)
