"""Start-up cost of the ``pyxs`` command: ``pyxs read`` against a bare
``python3 -c pass`` on the same interpreter, as a ratio from one run.

Both run with compiled bytecode (as an installed package has it: this
environment may set PYTHONDONTWRITEBYTECODE, so the benchmark points
PYTHONPYCACHEPREFIX at a temporary directory and warms it first), and
alternate run by run so that machine noise hits both alike. The daemon is
pyxs's embedded one (C xenstored with --daemon xenstored).

    python benchmarks/startup.py            # 40 runs of each
    python benchmarks/startup.py --quick    # proves it works (CI)
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from pyxs.testing import XenStoreDaemon  # noqa: E402

TARGET = 1.25  # pyxs read may cost at most this many times python -c pass


def _timed(command, env):
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    if result.returncode:
        raise SystemExit("%s failed: %s" % (command, result.stderr.decode()))
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--daemon", default="embedded")
    options = parser.parse_args(argv)
    runs = 3 if options.quick else options.runs
    with tempfile.TemporaryDirectory() as cache, \
            XenStoreDaemon(options.daemon) as daemon, \
            daemon.client() as client:
        client.write(b"/bench/startup", b"value")
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONPYCACHEPREFIX=cache,
                   XENSTORED_PATH=daemon.socket_path)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "pyxs read": [sys.executable, "-m", "pyxs", "read",
                          "/bench/startup"],
            "pyxs ls (Client)": [sys.executable, "-m", "pyxs", "ls",
                                 "/bench"],
        }
        times = {name: [] for name in commands}
        for _ in range(2):  # warm the bytecode cache and the page cache
            for command in commands.values():
                _timed(command, env)
        for _ in range(runs):
            for name, command in commands.items():
                times[name].append(_timed(command, env))
    base = statistics.median(times["python -c pass"])
    print("%-18s %9s %7s" % ("command", "median", "ratio"))
    for name, samples in times.items():
        median = statistics.median(samples)
        print("%-18s %7.1f ms %6.2fx" % (name, median * 1000, median / base))
    ratio = statistics.median(times["pyxs read"]) / base
    print("pyxs read / python -c pass = %.2f (target <= %.2f): %s"
          % (ratio, TARGET, "met" if ratio <= TARGET else "MISSED"))
    return 0 if options.quick or ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
