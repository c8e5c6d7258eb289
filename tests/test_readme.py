"""The README's worked example runs and prints what the README says."""
import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _example():
    text = README.read_text()
    section = text.split("## A seed, reproduced", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(not README.exists(), reason="README not shipped with the installed tests")
def test_readme_seed_example_runs_as_documented():
    code = _example()
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    net, hidden, output = namespace["net"], namespace["hidden"], namespace["output"]
    # the values the README's comments state, taken from seed 001
    np.testing.assert_allclose(output.weights.ravel(), [0.985, 0.995], rtol=1e-12)
    np.testing.assert_allclose(hidden.weights, [[0.99, 0.49], [1.0, -0.5]], rtol=1e-12)
    np.testing.assert_allclose(output.dweights.ravel(), [1.5, 0.5], rtol=1e-12)
    assert "[[2.5]]" in code and "0.25" in code
    assert net.loss == "squared_error"
