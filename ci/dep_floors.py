"""The oldest versions that cbp declares for its runtime dependencies.

    python ci/dep_floors.py            # one "name==floor" line per dependency
    python ci/dep_floors.py numpy      # only that floor, e.g. 1.25

Read from ``[project] dependencies`` in pyproject.toml: the floor of a
requirement is the version of its ``>=`` (or ``~=``, ``==``) clause.  Every
dependency needs one (an unbounded dependency cannot be tested at its
oldest), and asking for a package that is not a dependency is an error.
The full listing is a pip constraints file: ci/wheels.sh installs the wheel
under it to test cbp against the oldest stack it claims to support.
"""

import pathlib
import re
import sys

import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
OPS = r"~=|==|>=|<=|!=|>|<"


def _parse(dep):
    """(canonical name, [(op, version)], marker) of a PEP 508 requirement."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # plain parse of "name[extras] specs ; marker"
        body, _, marker = dep.partition(";")
        m = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[[^\]]*\])?\s*\(?([^)]*)\)?\s*$", body)
        if not m:
            raise SystemExit(f"dep_floors: cannot parse requirement {dep!r}") from None
        name = m.group(1)
        specs = [s.strip() for s in m.group(2).split(",") if s.strip()]
        clauses = [re.match(rf"({OPS})\s*(\S+)", s).groups() for s in specs]
        marker = marker.strip()
    else:
        req = Requirement(dep)
        name, clauses = req.name, [(s.operator, s.version) for s in req.specifier]
        marker = str(req.marker) if req.marker else ""
    return re.sub(r"[-_.]+", "-", name).lower(), clauses, marker


def _key(version):
    return tuple(int(x) for x in re.findall(r"\d+", version))


def floors(pyproject=ROOT / "pyproject.toml"):
    with open(pyproject, "rb") as f:
        deps = tomllib.load(f)["project"].get("dependencies", [])
    found = {}
    for dep in deps:
        name, clauses, marker = _parse(dep)
        lows = [version for op, version in clauses if op in (">=", "~=", "==")]
        if not lows:
            raise SystemExit(f"dep_floors: {dep!r} has no lower bound")
        found[name] = (max(lows, key=_key), marker)
    return found


def main(argv):
    found = floors()
    if argv:
        name = re.sub(r"[-_.]+", "-", argv[0]).lower()
        if name not in found:
            raise SystemExit(f"dep_floors: {argv[0]} is not in [project] dependencies")
        print(found[name][0])
        return 0
    for name, (version, marker) in found.items():
        print(f"{name}=={version}" + (f"; {marker}" if marker else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
