"""The ``cbp`` command line (cbp.cli), through main() and one real process."""

import csv
import importlib.util
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

import cbp
from cbp import cli


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err, code, expected, *phrases):
    """The error is exactly one line on stderr, with the phrases, and no traceback."""
    assert code == expected, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, (phrase, err)


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def blobs(seed=0, n=40):
    """Three well separated blobs in 2-D, labels named; a constant and an id column."""
    rng = np.random.default_rng(seed)
    centres = {"cat": (-4.0, 0.0), "dog": (4.0, 0.0), "emu": (0.0, 6.0)}
    rows = []
    for name, (cx, cy) in centres.items():
        for _ in range(n):
            rows.append([f"id{len(rows)}", cx + rng.normal(), cy + rng.normal(), 7.0, name])
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


BLOB_HEADER = ["id", "a", "b", "const", "animal"]


@pytest.fixture
def blob_csv(tmp_path):
    return write(tmp_path / "blobs.csv", BLOB_HEADER, blobs())


@pytest.fixture
def line_csv(tmp_path):
    """y = 3 a - 2 b + 5, exactly."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(200, 2))
    y = 3 * X[:, 0] - 2 * X[:, 1] + 5
    return write(tmp_path / "line.csv", ["a", "b", "y"], np.column_stack([X, y]).tolist())


# -- demo, version, info -----------------------------------------------------
def test_version(capsys):
    code, out, err = run(capsys, "--version")
    assert (code, out, err) == (0, f"cbp {cbp.__version__}\n", "")


def test_no_arguments_run_the_demo_with_its_defaults(capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "demo", lambda *a, **k: calls.append(a))
    assert (
        run(
            capsys,
        )[0]
        == 0
    )
    assert run(capsys, "demo")[0] == 0
    assert run(capsys, "--epochs", "7", "--lr", "0.5", "--seed", "3")[0] == 0
    assert calls == [(10_000, 0.1, 1), (10_000, 0.1, 1), (7, 0.5, 3)]


def test_demo_trains_xor_on_every_backend(capsys):
    code, out, err = run(capsys, "demo", "--epochs", "300", "--seed", "2")
    assert code == 0 and err == ""
    assert out.startswith("XOR, 2-4-1 sigmoid, 300 full-batch epochs, lr 0.1 (seed 004)\n")
    # the final loss printed is that of the same run made here through the API
    X, labels = cbp.datasets.xor()
    rng = np.random.default_rng(2)
    W1, W2 = rng.uniform(size=(2, 4)), rng.uniform(size=(4, 1))
    net = cli._xor_network(W1, W2, "numpy")
    hist = net.fit(X, labels.reshape(-1, 1).astype(float), epochs=300, lr=0.1)
    assert f"final loss: {hist['loss'][-1]:.6g}\n" in out
    assert " numpy: " in out
    assert ("native:" in out) == cbp.native_available()


def test_demo_rejects_zero_epochs(capsys):
    one_line_error(run(capsys, "demo", "--epochs", "0")[2], 2, 2, "--epochs")


def test_info_reports_the_core_simd_openmp_and_blas(capsys):
    code, out, err = run(capsys, "info")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"cbp {cbp.__version__} ")
    assert f"NumPy {np.__version__}" in lines
    core = cbp._backend._core
    if core is None:
        assert any(l.startswith("native core: not loaded") for l in lines)
    else:
        assert f"native core: loaded ({core.__file__})" in lines
        assert any(l.startswith(f"SIMD kernel table: {core._simd()} ") for l in lines)
    assert ("OpenMP: yes" in out) == cbp.openmp_available()
    pytest.importorskip("threadpoolctl")
    assert "BLAS: " in out


def test_info_tolerates_a_core_without_simd_functions_and_no_threadpoolctl(capsys, monkeypatch):
    fake = types.SimpleNamespace(
        __file__="/x/_core.so", _thread_state=lambda: {"built": True, "limit": 3}
    )
    monkeypatch.setattr(cbp._backend, "_core", fake)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    code, out, _ = run(capsys, "info")
    assert code == 0
    assert "native core: loaded (/x/_core.so)" in out
    assert "SIMD kernel table: unknown" in out
    assert "OpenMP: yes, a limit of 3 threads" in out
    assert "pip install threadpoolctl" in out


def test_info_without_the_core(capsys, monkeypatch):
    monkeypatch.setattr(cbp._backend, "_core", None)
    monkeypatch.setattr(cbp._backend, "_why_not", "because of a test")
    out = run(capsys, "info")[1]
    assert "native core: not loaded (because of a test)" in out
    assert "OpenMP: no" in out


# -- train, predict, evaluate --------------------------------------------------
def _table(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_train_classifies_text_labels_and_saves_the_preprocessing(capsys, tmp_path, blob_csv):
    model = str(tmp_path / "m.npz")
    code, out, err = run(
        capsys,
        "train",
        blob_csv,
        "--target",
        "animal",
        "--drop",
        "id",
        "--validation-split",
        "0",
        "--epochs",
        "60",
        "--output",
        model,
        "--quiet",
        "--hidden",
        "8",
    )
    assert code == 0, err
    net = cbp.load(model)
    meta = net.metadata["cbp.cli"]
    assert meta["task"] == "classification"
    assert meta["features"] == ["a", "b", "const"] and meta["target"] == "animal"
    assert meta["labels"] == ["cat", "dog", "emu"]
    _, rows = _table(blob_csv)
    X = np.array([[float(r[1]), float(r[2]), float(r[3])] for r in rows])
    np.testing.assert_allclose(meta["x_mean"], X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(meta["x_scale"], [X[:, 0].std(), X[:, 1].std(), 1.0], rtol=1e-12)
    assert net.loss == "categorical_crossentropy" and net.layers[-1].activation == "softmax"
    assert [l.n_neurons for l in net.layers] == [8, 3]
    # the printed metrics are the network's on the (standardised) rows
    truth = np.array([meta["labels"].index(r[4]) for r in rows])
    Xs = (X - X.mean(axis=0)) / np.array(meta["x_scale"])
    expect = net.evaluate(Xs, truth)
    assert expect["accuracy"] == 1.0  # the blobs are far apart
    assert f"{expect['loss']:.4g}" in out and "1.0000" in out
    # predict: labels by name, from columns in another order, without the target
    shuffled = tmp_path / "new.csv"
    write(shuffled, ["b", "extra", "const", "a"], [[r[2], "text", r[3], r[1]] for r in rows[:10]])
    code, out, err = run(capsys, "predict", model, str(shuffled))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "animal"
    assert lines[1:] == [r[4] for r in rows[:10]]
    # --output writes the same CSV to a file
    dest = tmp_path / "pred.csv"
    assert run(capsys, "predict", model, str(shuffled), "--output", str(dest))[0] == 0
    assert dest.read_text().splitlines() == lines
    # evaluate prints the same metrics as training did on these rows
    code, out, _ = run(capsys, "evaluate", model, blob_csv)
    assert code == 0
    assert f"{expect['loss']:.4g}" in out and "1.0000" in out and "120" in out


def test_train_reports_validation_and_learns(capsys, tmp_path, blob_csv):
    model = str(tmp_path / "m.npz")
    code, out, err = run(
        capsys,
        "train",
        blob_csv,
        "--target",
        "animal",
        "--drop",
        "id",
        "--epochs",
        "40",
        "--output",
        model,
        "--seed",
        "3",
    )
    assert code == 0, err
    assert "96 training rows, 24 validation rows, 3 features" in out
    assert (
        "network 3-64-32-3 (relu, output softmax), categorical_crossentropy, adam lr 0.001" in out
    )
    lines = out.splitlines()
    first = next(k for k, l in enumerate(lines) if l.split() == ["rows", "loss", "accuracy"])
    table = lines[first:]
    assert table[1].split()[:2] == ["train", "96"]
    assert table[2].split()[:2] == ["validation", "24"]
    assert float(table[2].split()[3]) == 1.0  # validation accuracy
    assert cbp.load(model).epochs_trained == 40


def test_train_regression_unscales_its_predictions(capsys, tmp_path, line_csv):
    model = str(tmp_path / "r.npz")
    code, out, err = run(
        capsys,
        "train",
        line_csv,
        "--target",
        "y",
        "--hidden",
        "none",
        "--epochs",
        "300",
        "--lr",
        "0.01",
        "--validation-split",
        "0.25",
        "--output",
        model,
        "--quiet",
    )
    assert code == 0, err
    net = cbp.load(model)
    meta = net.metadata["cbp.cli"]
    assert meta["task"] == "regression" and meta["labels"] is None
    assert net.loss == "squared_error" and net.layers[-1].activation == "identity"
    _, rows = _table(line_csv)
    data = np.array(rows, dtype=float)
    assert "rmse" in out and "r2" in out
    code, out, _ = run(capsys, "predict", model, line_csv)
    pred = np.array(out.splitlines()[1:], dtype=float)
    assert out.splitlines()[0] == "y"
    # a linear target and a linear model: near exact, in the target's own units
    np.testing.assert_allclose(pred, data[:, 2], atol=0.05)
    Xs = (data[:, :2] - meta["x_mean"]) / meta["x_scale"]
    np.testing.assert_array_equal(pred, net.predict(Xs)[:, 0] * meta["y_scale"] + meta["y_mean"])
    code, out, _ = run(capsys, "evaluate", model, line_csv)
    r2 = float(out.splitlines()[1].split()[-1])
    residual = np.sum((pred - data[:, 2]) ** 2)
    assert r2 == pytest.approx(
        1 - residual / np.sum((data[:, 2] - data[:, 2].mean()) ** 2), abs=1e-4
    )
    assert r2 > 0.999


def test_a_numeric_target_can_be_classified_with_numeric_label_order(capsys, tmp_path):
    rows = [[float(i), "10" if i % 2 else "2"] for i in range(20)]
    path = write(tmp_path / "n.csv", ["x", "k"], rows)
    model = str(tmp_path / "n.npz")
    assert (
        run(
            capsys,
            "train",
            path,
            "--target",
            "k",
            "--task",
            "classification",
            "--epochs",
            "2",
            "--output",
            model,
            "--quiet",
        )[0]
        == 0
    )
    assert cbp.load(model).metadata["cbp.cli"]["labels"] == ["2", "10"]
    assert (
        run(capsys, "train", path, "--target", "k", "--epochs", "2", "--output", model, "--quiet")[
            0
        ]
        == 0
    )
    assert cbp.load(model).metadata["cbp.cli"]["task"] == "regression"


def test_a_byte_order_mark_crlf_lines_quotes_and_blank_lines_are_read(capsys, tmp_path):
    text = '\ufeff"a","b",label\r\n1,2,"x, y"\r\n\r\n3,4,z\r\n5,6,z\r\n'
    path = tmp_path / "bom.csv"
    path.write_bytes(text.encode("utf-8"))
    table = cli.read_csv(str(path))
    assert table.header == ["a", "b", "label"]
    assert table.rows == [["1", "2", "x, y"], ["3", "4", "z"], ["5", "6", "z"]]
    assert table.lines == [2, 4, 5]
    model = str(tmp_path / "m.npz")
    assert (
        run(
            capsys,
            "train",
            str(path),
            "--target",
            "label",
            "--epochs",
            "2",
            "--validation-split",
            "0",
            "--output",
            model,
            "--quiet",
        )[0]
        == 0
    )
    assert cbp.load(model).metadata["cbp.cli"]["labels"] == ["x, y", "z"]
    out = run(capsys, "predict", model, str(path))[1]
    assert list(csv.reader(out.splitlines()))[0] == ["label"]
    assert all(row[0] in ("x, y", "z") for row in csv.reader(out.splitlines()[1:]))


def test_train_plot_writes_a_png(capsys, tmp_path, blob_csv):
    pytest.importorskip("matplotlib")
    png = tmp_path / "h.png"
    code, out, err = run(
        capsys,
        "train",
        blob_csv,
        "--target",
        "animal",
        "--drop",
        "id",
        "--epochs",
        "5",
        "--output",
        str(tmp_path / "m.npz"),
        "--quiet",
        "--plot",
        str(png),
    )
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_plot_without_matplotlib_names_the_extra(capsys, tmp_path, blob_csv, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "cbp.plot", raising=False)
    code, _, err = run(
        capsys,
        "train",
        blob_csv,
        "--target",
        "animal",
        "--plot",
        str(tmp_path / "h.png"),
        "--output",
        str(tmp_path / "m.npz"),
    )
    one_line_error(err, code, 2, 'pip install "cbp[plot]"')
    assert not (tmp_path / "m.npz").exists()  # refused before training


# -- bad input: one line, status 2 (usage) or 1 (data) -------------------------
@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--lr", "0"], "argument --lr: must be a finite number above 0"),
        (["--lr", "nan"], "argument --lr"),
        (["--epochs", "-1"], "argument --epochs: must be at least 1"),
        (["--epochs", "two"], "argument --epochs: expected a whole number"),
        (["--hidden", "a,b"], "argument --hidden: expected layer sizes like 64,32"),
        (["--hidden", "4,0"], "argument --hidden: layer sizes must be at least 1"),
        (["--batch-size", "0"], "argument --batch-size"),
        (["--validation-split", "1"], "argument --validation-split: must be in [0, 1)"),
        (["--optimizer", "lbfgs"], "argument --optimizer: invalid choice"),
        (["--task", "ranking"], "argument --task"),
        (["--activation", "swish"], "argument --activation: unknown activation"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_train_options_are_usage_errors(capsys, blob_csv, tmp_path, args, phrase):
    code, _, err = run(
        capsys,
        "train",
        blob_csv,
        "--target",
        "animal",
        "--drop",
        "id",
        "--output",
        str(tmp_path / "m.npz"),
        *args,
    )
    one_line_error(err, code, 2, phrase, "cbp train" if args != ["--bogus"] else "cbp")


def test_usage_errors_without_a_command_or_argument(capsys):
    code, _, err = run(capsys, "frobnicate")
    one_line_error(err, code, 2, "invalid choice: 'frobnicate'")
    code, _, err = run(capsys, "train", "x.csv")
    one_line_error(err, code, 2, "--target")


def _bad_csvs(tmp_path):
    p = tmp_path
    (p / "empty.csv").write_text("")
    (p / "blank.csv").write_text("\n \n")
    (p / "header.csv").write_text("a,b,y\n")
    (p / "ragged.csv").write_text("a,b,y\n1,2,3\n4,5\n")
    (p / "text.csv").write_text("a,colour,y\n1,red,3\n2,blue,4\n")
    (p / "nan.csv").write_text("a,b,y\n1,nan,3\n2,1,4\n")
    (p / "gap.csv").write_text("a,b,y\n1,,3\n2,1,4\n")
    (p / "dup.csv").write_text("a,a,y\n1,2,3\n")
    (p / "noname.csv").write_text("a,,y\n1,2,3\n")
    (p / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00")
    (p / "quote.csv").write_text('a,b,y\n1,"2\n')
    (p / "one.csv").write_text("a,b,y\n1,2,cat\n3,4,cat\n")
    (p / "words.csv").write_text("a,b,y\n1,2,cat\n3,4,dog\n")
    (p / "tiny.csv").write_text("a,b,y\n1,2,3\n")
    os.mkdir(p / "folder.csv")


@pytest.mark.parametrize(
    "name, extra, phrase",
    [
        ("missing.csv", [], "missing.csv: no such file"),
        ("folder.csv", [], "is a folder"),
        ("empty.csv", [], "empty.csv is empty"),
        ("blank.csv", [], "blank.csv is empty"),
        ("header.csv", [], "has a header but no data rows"),
        ("ragged.csv", [], "ragged.csv, line 3: 2 fields, the header has 3"),
        ("text.csv", [], "line 2: feature column 'colour' holds 'red', not a number"),
        ("text.csv", [], "--drop colour"),
        ("nan.csv", [], "line 2: feature column 'b' holds 'nan', not a number"),
        ("gap.csv", [], "feature column 'b' holds '', not a number"),
        ("dup.csv", [], "names column 'a' twice"),
        ("noname.csv", [], "column 2 of the header has no name"),
        ("binary.csv", [], "not a UTF-8 text (CSV) file"),
        ("quote.csv", [], "not valid CSV"),
        ("one.csv", [], "has a single class ('cat')"),
        ("words.csv", ["--task", "regression"], "target 'y' holds 'cat', not a number"),
        ("tiny.csv", [], "too few for a validation split"),
        ("words.csv", ["--drop", "zz"], "has no column 'zz' (--drop)"),
    ],
)
def test_bad_data_is_a_data_error(capsys, tmp_path, name, extra, phrase):
    _bad_csvs(tmp_path)
    code, _, err = run(
        capsys,
        "train",
        str(tmp_path / name),
        "--target",
        "y",
        "--output",
        str(tmp_path / "m.npz"),
        *extra,
    )
    one_line_error(err, code, 1, phrase)
    assert not (tmp_path / "m.npz").exists()


def test_an_unknown_target_names_the_columns(capsys, blob_csv, tmp_path):
    code, _, err = run(capsys, "train", blob_csv, "--target", "zebra")
    one_line_error(
        err,
        code,
        1,
        "has no column 'zebra' (the target)",
        "its columns are id, a, b, const, animal",
    )


def test_an_output_folder_that_does_not_exist(capsys, blob_csv, tmp_path):
    code, _, err = run(
        capsys,
        "train",
        blob_csv,
        "--target",
        "animal",
        "--output",
        str(tmp_path / "nope" / "m.npz"),
    )
    one_line_error(err, code, 1, "--output", "does not exist")


@pytest.fixture
def model(capsys, tmp_path, blob_csv):
    path = str(tmp_path / "m.npz")
    assert (
        run(
            capsys,
            "train",
            blob_csv,
            "--target",
            "animal",
            "--drop",
            "id",
            "--epochs",
            "3",
            "--output",
            path,
            "--quiet",
        )[0]
        == 0
    )
    return path


def test_model_files_that_are_not_models(capsys, tmp_path, blob_csv, model):
    code, _, err = run(capsys, "predict", blob_csv, blob_csv)
    one_line_error(err, code, 1, "blobs.csv is not a cbp model file (not an .npz archive)")
    np.savez(tmp_path / "other.npz", a=np.ones(2))
    code, _, err = run(capsys, "predict", str(tmp_path / "other.npz"), blob_csv)
    one_line_error(err, code, 1, "not a cbp model: ", "is not a cbp network file")
    code, _, err = run(capsys, "predict", str(tmp_path / "none.npz"), blob_csv)
    one_line_error(err, code, 1, "none.npz: no such file")
    plain = str(tmp_path / "plain.npz")
    cbp.Network([cbp.Dense(3, 1)]).save(plain)
    code, _, err = run(capsys, "evaluate", plain, blob_csv)
    one_line_error(err, code, 1, "not one written by 'cbp train'")
    broken = cbp.load(model)
    broken.metadata["cbp.cli"]["x_scale"] = [1.0]
    broken.save(plain)
    code, _, err = run(capsys, "predict", plain, blob_csv)
    one_line_error(err, code, 1, "metadata is invalid")


def test_predict_and_evaluate_data_errors(capsys, tmp_path, model):
    nofeat = write(tmp_path / "nofeat.csv", ["a", "const", "animal"], [[1, 7, "cat"]])
    code, _, err = run(capsys, "predict", model, nofeat)
    one_line_error(err, code, 1, "has no column 'b' (feature)")
    notarget = write(tmp_path / "notarget.csv", ["a", "b", "const"], [[1, 2, 7]])
    assert run(capsys, "predict", model, notarget)[0] == 0
    code, _, err = run(capsys, "evaluate", model, notarget)
    one_line_error(err, code, 1, "has no column 'animal' (the model's target)")
    unseen = write(tmp_path / "unseen.csv", ["a", "b", "const", "animal"], [[1, 2, 7, "yak"]])
    code, _, err = run(capsys, "evaluate", model, unseen)
    one_line_error(err, code, 1, "line 2: label 'yak' of 'animal' is not one the model knows")


# -- explain -------------------------------------------------------------------
class _FakeTrace:
    def __init__(self, net, X, y, lr):
        self.net, self.X, self.y, self.lr = net, X, y, lr
        net.forward(X)
        net.backward(y)
        self.layers = [
            types.SimpleNamespace(dweights=l.dweights.copy(), dbias=l.dbias.copy())
            for l in net.layers
        ]

    def explain(self, names=None):
        return f"EXPLAINED x={self.X.tolist()} y={np.asarray(self.y).tolist()} lr={self.lr}" + (
            "" if names is None else f" names={names}"
        )


@pytest.fixture
def fake_explainers(monkeypatch):
    calls = []
    examples = types.ModuleType("cbp.examples")
    examples.NAMES = ("000", "001", "mazur")

    def get(name):
        calls.append(name)
        hidden = cbp.Dense(2, 2, "relu", weights=[[1.0, 0.5], [1.0, -0.5]], bias=[0.5, 0.0])
        output = cbp.Dense(2, 1, "relu", weights=[[1.0], [1.0]], bias=[0.5])
        net = cbp.Network([hidden, output], loss="squared_error")
        return net, np.array([[1.0, 0.0]]), np.array([[2.0]]), 0.01

    examples.get = get
    examples.names = lambda name: {"w1": f"{name}-w1"}
    examples.titles = lambda: {name: f"Title {name}" for name in examples.NAMES}
    tracing = types.ModuleType("cbp.trace")
    tracing.trace = lambda net, X, y, lr=None: _FakeTrace(net, X, y, lr)
    monkeypatch.setitem(sys.modules, "cbp.examples", examples)
    monkeypatch.setitem(sys.modules, "cbp.trace", tracing)
    return calls


def test_explain_an_example(capsys, fake_explainers):
    code, out, err = run(capsys, "explain", "001")
    assert code == 0, err
    assert out == (
        "Title 001\n\nEXPLAINED x=[[1.0, 0.0]] y=[[2.0]] lr=0.01 names={'w1': '001-w1'}\n"
    )
    code, out, _ = run(capsys, "explain", "1", "--lr", "0.5")  # 1 means 001
    assert out == (
        "Title 001\n\nEXPLAINED x=[[1.0, 0.0]] y=[[2.0]] lr=0.5 names={'w1': '001-w1'}\n"
    )
    assert (
        run(capsys, "explain", "mazur", "--x", "3,4", "--y", "1.5")[1]
        == "Title mazur\n\nEXPLAINED x=[[3.0, 4.0]] y=[[1.5]] lr=0.01 names={'w1': 'mazur-w1'}\n"
    )
    assert fake_explainers == ["001", "001", "mazur"]


def test_explain_errors(capsys, fake_explainers):
    code, _, err = run(capsys, "explain", "042")
    one_line_error(err, code, 2, "'042' is neither an example (000, 001, mazur) nor a model file")
    code, _, err = run(capsys, "explain", "001", "--x", "1,2,3", "--y", "1")
    one_line_error(err, code, 2, "the network takes 2 inputs, got 3 values")
    code, _, err = run(capsys, "explain", "001", "--x", "1,2")
    one_line_error(err, code, 2, "give --x and --y together")
    code, _, err = run(capsys, "explain", "001", "--x", "1,a", "--y", "1")
    one_line_error(err, code, 2, "argument --x: expected comma-separated numbers")


def test_explain_a_saved_model(capsys, tmp_path, fake_explainers, line_csv):
    plain = str(tmp_path / "plain.npz")
    net = cbp.Network([cbp.Dense(2, 3, "tanh", seed=0), cbp.Dense(3, 1, seed=1)])
    net.save(plain)
    code, out, err = run(capsys, "explain", plain, "--x", "1,0", "--y", "2")
    assert (code, out) == (0, "EXPLAINED x=[[1.0, 0.0]] y=[[2.0]] lr=None\n"), err
    code, _, err = run(capsys, "explain", plain)
    one_line_error(err, code, 2, "explaining a model needs an input and its target")
    code, _, err = run(capsys, "explain", plain, "--x", "1,0", "--y", "2,3")
    one_line_error(err, code, 2, "the network has 1 outputs, got 2 values")
    # a model of cbp train: the input is standardised, the target too
    model = str(tmp_path / "r.npz")
    assert (
        run(
            capsys,
            "train",
            line_csv,
            "--target",
            "y",
            "--epochs",
            "2",
            "--output",
            model,
            "--quiet",
        )[0]
        == 0
    )
    meta = cbp.load(model).metadata["cbp.cli"]
    code, out, err = run(capsys, "explain", model, "--x", "1,-1", "--y", "10")
    assert code == 0, err
    x = (np.array([1.0, -1.0]) - meta["x_mean"]) / meta["x_scale"]
    y = (10 - meta["y_mean"]) / meta["y_scale"]
    assert out.splitlines()[0].startswith("the model standardises its inputs")
    assert out.splitlines()[1] == f"EXPLAINED x={[x.tolist()]} y={[[y]]} lr=None"


def test_explain_a_classifier_takes_label_names(capsys, tmp_path, fake_explainers, model):
    code, out, err = run(capsys, "explain", model, "--x", "1,2,7", "--y", "dog")
    assert code == 0, err
    assert out.splitlines()[1].split(" y=")[1] == "[1] lr=None"
    code, _, err = run(capsys, "explain", model, "--x", "1,2,7", "--y", "yak")
    one_line_error(err, code, 2, "'yak' is not a label of the model (cat, dog, emu)")
    plain = str(tmp_path / "cce.npz")
    cbp.Network([cbp.Dense(2, 3, "softmax")], loss="categorical_crossentropy").save(plain)
    assert run(capsys, "explain", plain, "--x", "1,2", "--y", "2")[1].endswith(" y=[2] lr=None\n")
    code, _, err = run(capsys, "explain", plain, "--x", "1,2", "--y", "3")
    one_line_error(err, code, 2, "class 3 is out of range for 3 outputs")


def test_explain_plot_draws_the_trace(capsys, tmp_path, fake_explainers):
    pytest.importorskip("matplotlib")
    png = tmp_path / "net.png"
    code, out, err = run(capsys, "explain", "001", "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_without_the_trace_module(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cbp.trace", None)
    code, _, err = run(capsys, "explain", "001")
    one_line_error(err, code, 2, "cbp explain needs cbp.trace and cbp.examples")


@pytest.mark.skipif(
    importlib.util.find_spec("cbp.examples") is None, reason="cbp.examples is not written yet"
)
def test_explain_001_end_to_end(capsys):
    code, out, err = run(capsys, "explain", "001")
    assert code == 0, err
    # seed 001: the forward pass gives 2.5, the loss is 0.25, dL/dw5 = 1.5
    for value in ("2.5", "0.25", "1.5"):
        assert value in out


# -- bench ---------------------------------------------------------------------
def test_bench_outside_the_source_tree(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "bench_script", lambda: tmp_path / "bench" / "run.py")
    code, _, err = run(capsys, "bench", "--quick")
    one_line_error(err, code, 2, "no benchmarks here", "source tree")


def test_bench_runs_the_script_with_the_options(capsys, monkeypatch, tmp_path):
    script = tmp_path / "run.py"
    record = tmp_path / "argv.txt"
    script.write_text(
        f"import sys\nopen({str(record)!r}, 'w').write(' '.join(sys.argv[1:]))\nsys.exit(3)\n"
    )
    monkeypatch.setattr(cli, "bench_script", lambda: script)
    assert run(capsys, "bench", "--quick", "--only", "xor", "spiral", "--threads", "2")[0] == 3
    assert record.read_text() == "--quick --threads 2 --only xor spiral"


def test_bench_script_is_the_source_trees():
    tree = pathlib.Path(__file__).resolve().parent.parent
    if pathlib.Path(cbp.__file__).resolve().parent.parent != tree:
        pytest.skip("cbp is not imported from the source tree of these tests")
    assert cli.bench_script() == tree / "bench" / "run.py"
    assert cli.bench_script().is_file()


# -- a real process ------------------------------------------------------------
def _cbp(tmp_path, *args):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "cbp", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_m_cbp_in_a_process(tmp_path):
    src = write(tmp_path / "blobs.csv", BLOB_HEADER, blobs())
    p = _cbp(tmp_path, "--version")
    assert (p.returncode, p.stdout) == (0, f"cbp {cbp.__version__}\n")
    p = _cbp(tmp_path, "train", src, "--target", "animal", "--lr", "0")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "argument --lr" in p.stderr, p.stderr
    p = _cbp(tmp_path, "train", "missing.csv", "--target", "animal")
    assert p.returncode == 1 and p.stderr == "cbp train: error: missing.csv: no such file\n"
    p = _cbp(
        tmp_path,
        "train",
        src,
        "--target",
        "animal",
        "--drop",
        "id",
        "--epochs",
        "5",
        "--output",
        "m.npz",
    )
    assert p.returncode == 0, p.stderr
    assert "model saved to m.npz" in p.stdout
    p = _cbp(tmp_path, "predict", "m.npz", src)
    assert p.returncode == 0 and p.stdout.splitlines()[0] == "animal"
    assert len(p.stdout.splitlines()) == 121


def test_a_reader_that_leaves_early_is_no_error(tmp_path):
    """cbp predict ... | head -1: stdout closes early; no traceback, status 141."""
    write(tmp_path / "big.csv", ["a", "y"], [[i, i] for i in range(50_000)])
    assert (
        _cbp(
            tmp_path,
            "train",
            "big.csv",
            "--target",
            "y",
            "--epochs",
            "1",
            "--hidden",
            "none",
            "--quiet",
        ).returncode
        == 0
    )
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    with subprocess.Popen(
        [sys.executable, "-m", "cbp", "predict", "model.npz", "big.csv"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as p:
        assert p.stdout.readline() == b"y\n"
        p.stdout.close()
        err = p.stderr.read()
        assert p.wait(timeout=120) == 141, err
    assert err == b""


def test_the_console_script(tmp_path):
    script = pathlib.Path(sys.executable).parent / ("cbp.exe" if os.name == "nt" else "cbp")
    if not script.exists():
        pytest.skip("no cbp console script beside this interpreter")
    p = subprocess.run(
        [str(script), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert (p.returncode, p.stdout) == (0, f"cbp {cbp.__version__}\n")
