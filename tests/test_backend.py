"""The backend switch: the native run really uses the compiled core."""

import subprocess
import sys

import pytest

import cbp


def test_native_run_uses_compiled_core(backend):
    net = cbp.Network([cbp.Dense(2, 1, "identity")], backend=backend)
    engine_module = type(net._engine).__module__
    if backend == "native":
        assert engine_module == "cbp._core"
        assert cbp._backend._core.__file__.endswith((".so", ".pyd"))
    else:
        assert engine_module == "cbp._reference"
    assert net.backend == backend


def test_default_backend_is_native_when_available():
    expected = "native" if cbp.native_available() else "numpy"
    assert cbp.default_backend() == expected
    assert cbp.Network([cbp.Dense(1, 1)]).backend == expected


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        cbp.Network([cbp.Dense(1, 1)], backend="gpu")


def test_no_extensions_env_forces_numpy_and_native_fails_loudly():
    code = (
        "import cbp\n"
        "assert not cbp.native_available()\n"
        "assert not cbp.openmp_available()\n"
        "assert cbp.Network([cbp.Dense(1, 1)]).backend == 'numpy'\n"
        "try:\n"
        "    cbp.Network([cbp.Dense(1, 1)], backend='native')\n"
        "except cbp.NativeUnavailableError as e:\n"
        "    assert 'CBP_NO_EXTENSIONS' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    env = {**__import__("os").environ, "CBP_NO_EXTENSIONS": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
