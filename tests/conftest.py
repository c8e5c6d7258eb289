"""Shared fixtures: every API test runs once per backend.

When the compiled core is not loaded, the native runs are skipped, except
where ``CBP_REQUIRE_NATIVE=1`` is set (CI sets it): then they fail, so that a
broken build can never pass as a NumPy-only run.
"""
import os

import pytest

import cbp

REQUIRE_NATIVE = os.environ.get("CBP_REQUIRE_NATIVE", "") not in ("", "0")


@pytest.fixture(params=["native", "numpy"])
def backend(request):
    """The backend name; native runs need the compiled core."""
    if request.param == "native" and not cbp.native_available():
        if REQUIRE_NATIVE:
            pytest.fail(f"CBP_REQUIRE_NATIVE=1 but the core is missing: {cbp._backend._why_not}")
        pytest.skip("compiled core not available")
    return request.param


@pytest.fixture
def native_core():
    """The compiled module ``cbp._core``; skipped without it, failed under
    CBP_REQUIRE_NATIVE=1."""
    if not cbp.native_available():
        if REQUIRE_NATIVE:
            pytest.fail(f"CBP_REQUIRE_NATIVE=1 but the core is missing: {cbp._backend._why_not}")
        pytest.skip("compiled core not available")
    return cbp._backend._core
