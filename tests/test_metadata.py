"""Network.metadata: a caller's JSON dict kept by save/load and pickling."""

import json
import os
import pickle

import numpy as np
import pytest

import cbp


def _net(backend):
    return cbp.Network([cbp.Dense(2, 3, "relu", seed=1), cbp.Dense(3, 1, seed=2)], backend=backend)


META = {"features": ["a", "b"], "scale": [1.5, 0.25], "labels": None, "nested": {"k": [1, 2]}}


def test_metadata_defaults_to_none_and_survives_save_and_load(tmp_path, backend):
    net = _net(backend)
    assert net.metadata is None
    net.save(tmp_path / "none.npz")
    assert cbp.load(tmp_path / "none.npz").metadata is None
    net.metadata = META
    net.save(tmp_path / "m.npz")
    back = cbp.load(tmp_path / "m.npz")
    assert back.metadata == META
    assert back.metadata is not net.metadata
    np.testing.assert_array_equal(back.parameters, net.parameters)


def test_metadata_is_in_the_json_meta_of_the_file(tmp_path):
    net = _net("numpy")
    net.metadata = {"x": 1}
    net.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        assert json.loads(str(f["meta"][()]))["metadata"] == {"x": 1}


def test_metadata_survives_pickle(backend):
    net = _net(backend)
    net.metadata = META
    back = pickle.loads(pickle.dumps(net))
    assert back.metadata == META


def _rewrite_meta(src, dst, edit):
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    state = json.loads(str(arrays["meta"][()]))
    edit(state)
    arrays["meta"] = np.array(json.dumps(state))
    np.savez(dst, **arrays)


def test_a_file_without_the_key_loads_with_none(tmp_path):
    net = _net("numpy")
    net.metadata = {"x": 1}
    net.save(tmp_path / "m.npz")
    _rewrite_meta(tmp_path / "m.npz", tmp_path / "old.npz", lambda s: s.pop("metadata"))
    assert cbp.load(tmp_path / "old.npz").metadata is None


@pytest.mark.parametrize("bad", [[1, 2], "text", 3])
def test_metadata_that_is_not_an_object_is_a_format_error(tmp_path, bad):
    _net("numpy").save(tmp_path / "m.npz")

    def edit(state):
        state["metadata"] = bad

    _rewrite_meta(tmp_path / "m.npz", tmp_path / "bad.npz", edit)
    with pytest.raises(cbp.FormatError, match="metadata"):
        cbp.load(tmp_path / "bad.npz")


def test_metadata_that_is_not_json_fails_save_and_leaves_no_file(tmp_path):
    net = _net("numpy")
    net.metadata = {"scale": np.ones(2)}
    with pytest.raises(TypeError, match="JSON serializable"):
        net.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []
