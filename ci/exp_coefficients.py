"""Derive the coefficients of cbp's vector exp (src/_simd_elem.h, cbp_expv).

exp(r) = 1 + r + r^2 P(r) on |r| <= ln2 / 2, P of degree 9: the minimax
polynomial for the relative error of exp(r), by the Remez exchange in
50-digit arithmetic (mpmath).  Prints its error, and the error left by
two sets of doubles, measured on a fine grid: its coefficients rounded
(1.1e-17), and the set src/_simd_elem.h uses (8.1e-18: an iterate of an
earlier run of this exchange whose reference points cycled, kept because
it rounds better).  Needs mpmath (``pip install mpmath``).

    python ci/exp_coefficients.py
"""

import re
from pathlib import Path

import mpmath as mp

mp.mp.dps = 50
DEG = 9
HALF = mp.log(2) / 2 * mp.mpf("1.00001")  # |r| a little past ln2 / 2
GRID = [-HALF + 2 * HALF * i / 6000 for i in range(6001)]


def error(c, r):
    """exp(r)'s relative error of 1 + r + r^2 P(r), P's coefficients c."""
    p = mp.mpf(0)
    for ci in reversed(c):
        p = p * r + ci
    e = mp.exp(r)
    return (e - 1 - r - r * r * p) / e


def solve(points):
    """P's coefficients and E with error = (-1)^i E at the points."""
    n = len(points)
    a = mp.matrix(n, n)
    b = mp.matrix(n, 1)
    for i, r in enumerate(points):
        e = mp.exp(r)
        for j in range(DEG + 1):
            a[i, j] = r ** (j + 2)
        a[i, n - 1] = (-1) ** i * e
        b[i] = e - 1 - r
    x = mp.lu_solve(a, b)
    return [x[j] for j in range(n - 1)], x[n - 1]


def extrema(c, n):
    """The largest |error| of each run of one sign on the grid (the runs
    too small to matter, by r = 0 where the error has a double zero,
    joined to their neighbours), then the n largest that alternate."""
    ev = [error(c, r) for r in GRID]
    top = max(abs(e) for e in ev)
    runs = []  # (sign, index of the run's extremum)
    for i, e in enumerate(ev):
        if abs(e) < top * mp.mpf("1e-3"):
            continue
        s = e > 0
        if runs and runs[-1][0] == s:
            if abs(e) > abs(ev[runs[-1][1]]):
                runs[-1] = (s, i)
        else:
            runs.append((s, i))
    while len(runs) > n:  # drop the smaller end
        runs.pop(0 if abs(ev[runs[0][1]]) < abs(ev[runs[-1][1]]) else -1)
    return [GRID[i] for _, i in runs], top


def remez():
    """The minimax coefficients, and their error on the grid."""
    n = DEG + 2
    # n of the n + 1 extrema of a Chebyshev polynomial, without one next
    # to 0 (where the error is 0 whatever P)
    nodes = [HALF * mp.cos(mp.pi * (n - i) / n) for i in range(n + 1)]
    points = sorted(sorted(nodes, key=abs)[1:])
    for _ in range(60):
        c, lev = solve(points)
        found, top = extrema(c, n)
        if top - abs(lev) <= abs(lev) * mp.mpf("1e-4"):
            return c, top
        if len(found) != n:
            raise SystemExit(f"the exchange found {len(found)} alternating extrema, not {n}")
        points = found
    raise SystemExit("the exchange did not converge")


def committed():
    """The coefficients in src/_simd_elem.h's cbp_expv."""
    text = (Path(__file__).resolve().parents[1] / "src" / "_simd_elem.h").read_text()
    found = dict(re.findall(r"CBP_C\((\d+), ([0-9.e+-]+)\)", text))
    return [float(found[str(j + 2)]) for j in range(DEG + 1)]


def main():
    c, top = remez()
    print(f"minimax relative error {mp.nstr(top, 4)}")
    rounded = [float(x) for x in c]
    sets = (("the minimax coefficients rounded", rounded), ("src/_simd_elem.h's", committed()))
    for name, d in sets:
        left = max(abs(error([mp.mpf(x) for x in d], r)) for r in GRID)
        print(f"{name}: relative error {mp.nstr(left, 4)}")
        for j, x in enumerate(d):
            print(f"  c{j + 2} = {x!r}")


if __name__ == "__main__":
    main()
