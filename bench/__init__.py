"""cbp's benchmark suite: ``python bench/run.py --help``.

timing.py   autotimeit-style timer (median of repeats) and thread limits
peers.py    the problems and the implementations timed against each other
harness.py  check agreement, then time, a list of peers
workloads.py  the five workloads
report.py   machine info, markdown, JSON and the sweep plot
run.py      the command line
compiled.py the JAX and numba peers (pinned.py times them; tests check them)
pinned.py   the one-thread JAX/numba comparison, in a process pinned to one CPU
"""
