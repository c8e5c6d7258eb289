"""Shared fixtures: the backends, the compiled core and its code paths.

Every API test that takes ``backend`` runs once per backend.  When the
compiled core is not loaded, the native runs are skipped, except where
``CBP_REQUIRE_NATIVE=1`` is set (CI sets it): then they fail, so that a
broken build can never pass as a NumPy-only run.  ``CBP_REQUIRE_OPENMP=1``
does the same for the tests that need a core built with OpenMP.

Code paths.  A test can also run on the native core's other code paths, with
the same expected values: parametrize ``backend`` (or ``native``) indirectly
with ``"native-<path>"``, where ``<path>`` is one of the fixtures below that
force a path (``two_threads``, ``feature_major``); ``"native"`` and
``"numpy"`` are the plain backends::

    @pytest.mark.parametrize("backend", ["native", "numpy", "native-two_threads"],
                             indirect=True)

A whole module runs on a path with ``pytestmark =
pytest.mark.usefixtures("two_threads")``.

``interrupted_fit`` runs a fit that Ctrl-C stops, in a child process.

The fuzz counts of tests/test_fuzz.py are reported in the terminal summary.
"""

import os
import subprocess
import sys
import textwrap

import pytest

import cbp


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


REQUIRE_NATIVE = _flag("CBP_REQUIRE_NATIVE")
REQUIRE_OPENMP = _flag("CBP_REQUIRE_OPENMP")

#: the fixtures that force a code path of the native core
NATIVE_PATHS = ("two_threads", "feature_major")


@pytest.fixture(scope="session")
def native_core():
    """The compiled module ``cbp._core``; skipped without it, failed under
    CBP_REQUIRE_NATIVE=1."""
    if not cbp.native_available():
        if REQUIRE_NATIVE:
            pytest.fail(f"CBP_REQUIRE_NATIVE=1 but the core is missing: {cbp._backend._why_not}")
        pytest.skip("compiled core not available")
    return cbp._backend._core


@pytest.fixture(scope="session")
def openmp_core(native_core):
    """The compiled module, built with OpenMP; skipped without, failed under
    CBP_REQUIRE_OPENMP=1."""
    if not native_core._thread_state()["built"]:
        if REQUIRE_OPENMP:
            pytest.fail("CBP_REQUIRE_OPENMP=1 but the core was built without OpenMP")
        pytest.skip("the core was built without OpenMP: every step runs on one thread")
    return native_core


@pytest.fixture
def two_threads(openmp_core):
    """Every step of two rows or more runs in row chunks on 2 threads
    (feature-major passes off: they have their own path; the back-off of
    src/_threads.h off)."""
    saved, saved_fm = openmp_core._thread_config(2, 1, 0), openmp_core._feature_major_limits(0)
    # the back-off off: a loaded machine must not send steps back to one thread
    saved_on = openmp_core._thread_backoff(reset=True, on=False)["on"]
    yield
    openmp_core._thread_config(*saved)
    openmp_core._feature_major_limits(*saved_fm)
    openmp_core._thread_backoff(reset=True, on=saved_on)


@pytest.fixture
def feature_major(native_core):
    """fit() trains every network without dropout feature-major: the limits
    raised to 64 units and any batch size."""
    saved = native_core._feature_major_limits(64, 1, 1 << 30)
    yield
    native_core._feature_major_limits(*saved)


def _on_path(request, param):
    """The backend name of ``param`` ("native", "numpy", "native-<path>"),
    with that path forced for the test."""
    name, _, path = param.partition("-")
    if name not in ("native", "numpy") or (path and (name != "native" or path not in NATIVE_PATHS)):
        raise ValueError(
            f"unknown backend parameter {param!r}: 'native', 'numpy' or "
            f"'native-<path>' with a path of {NATIVE_PATHS}"
        )
    if name == "native":
        request.getfixturevalue("native_core")
        if path:
            request.getfixturevalue(path)
    return name


@pytest.fixture(params=["native", "numpy"])
def backend(request):
    """The backend name; native runs need the compiled core."""
    return _on_path(request, request.param)


@pytest.fixture
def native(request, native_core):
    """The compiled module, for tests that run both backends side by side
    (parametrized indirectly, on the path given)."""
    _on_path(request, getattr(request, "param", "native"))
    return native_core


# ---------------------------------------------------------------------------
# The fuzz counts (tests/test_fuzz.py counts its checked calls in FUZZ_COUNTS)
# ---------------------------------------------------------------------------
_FUZZ_MODULES = pytest.StashKey[list]()


def pytest_collection_finish(session):
    modules = {
        id(item.module): item.module
        for item in session.items
        if getattr(item, "module", None) is not None
    }
    session.config.stash[_FUZZ_MODULES] = [m for m in modules.values() if hasattr(m, "FUZZ_COUNTS")]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for module in config.stash.get(_FUZZ_MODULES, []):
        counts = module.FUZZ_COUNTS
        if not counts:
            continue
        per_test = {}
        for key, n in sorted(counts.items()):
            test, outcome = key.split(":", 1)
            per_test.setdefault(test, {})[outcome] = n
        cases = sum(n for k, n in counts.items() if not k.endswith(":examples"))
        examples = sum(n for k, n in counts.items() if k.endswith(":examples"))
        terminalreporter.section("fuzz counts")
        terminalreporter.write_line(
            f"{cases} fuzz cases tried ({examples} examples, max_examples="
            f"{module.MAX_EXAMPLES} per test and backend)"
        )
        for test, outcomes in per_test.items():
            line = ", ".join(f"{outcome} {n}" for outcome, n in outcomes.items())
            terminalreporter.write_line(f"  {test}: {line}")


# A fit interrupted by SIGINT in a child process: it must raise
# KeyboardInterrupt, leave the last completed epoch (as a fresh fit of that
# many epochs leaves it, bit for bit) and have run on the path `counter`
# names.  `setup` defines X, y and make(); `kwargs` is fit's keyword
# arguments, as Python source.
_INTERRUPTED_FIT = """
import os, signal, sys, threading, time
import numpy as np
import cbp

{setup}

kw = {kwargs}
net = make()


def interrupt():
    time.sleep(0.4)
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=interrupt, daemon=True).start()
try:
    net.fit(X, y, epochs=10**12, **kw)
except KeyboardInterrupt:
    pass
else:
    raise SystemExit("fit ended without the interrupt")
assert net._engine.{counter} > 0, "the fit did not take its path"
done = net.epochs_trained
assert done > 0 and len(net.history["loss"]) == done
ref = make()
ref.fit(X, y, epochs=done, **kw)
assert net.parameters.tobytes() == ref.parameters.tobytes()
assert net.history["loss"].tobytes() == ref.history["loss"].tobytes()
print(done)
"""


@pytest.fixture
def interrupted_fit(native_core):
    """run(setup, kwargs, counter, *argv): the interrupted fit above in a
    child process (bounded to 120 s); returns the epochs it completed."""

    def run(setup, kwargs, counter, *argv):
        code = _INTERRUPTED_FIT.format(
            setup=textwrap.dedent(setup).strip(), kwargs=kwargs, counter=counter
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        done = int(proc.stdout.split()[-1])
        assert done > 0
        return done

    return run
