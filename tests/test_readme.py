"""The README's Python examples run and give the results the README states.

The convention, for whoever edits README.md:

* Every ```python block runs, in the order of the file, in one namespace (a
  block may use the names an earlier one made), in a scratch directory.
* A block is skipped only if the last non-blank line before its fence is
  ``<!-- no-run -->``: an API synopsis with placeholders such as
  ``n_inputs``.  Any other block, a new one included, runs.
* A line ``expression  # result`` whose comment starts with a Python literal
  (``[[2.5]]``, ``0.25``, ``True``, ``'relu'``) states a result: the
  expression's value must equal the literal, numbers with the same shape and
  to a relative tolerance of 1e-12.  After the literal, a space, ``,``, ``:``
  or ``;`` begins prose (``# 0.25, the loss``).  A comment that does not
  start with a literal is prose only.
* A result comment must end a statement that is a bare expression at the top
  level of its block; anywhere else (an assignment, a loop, inside a
  multi-line call) it is an error, never silently unchecked.
"""

import ast
import io
import pathlib
import re
import tokenize

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
NO_RUN = "<!-- no-run -->"
RTOL = 1e-12
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
NOTHING = object()  # a comment that states no result
needs_readme = pytest.mark.skipif(
    not README.exists(), reason="README not shipped with the installed tests"
)


class Block:
    def __init__(self, line, code, runs):
        self.line, self.code, self.runs = line, code, runs  # line: README line of the code


def python_blocks(text):
    """Every ```python block of a Markdown text, in order."""
    blocks = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip().rsplit("\n", 1)[-1].strip()
        blocks.append(Block(text.count("\n", 0, m.start(1)) + 1, m.group(1), before != NO_RUN))
    return blocks


def stated_result(comment):
    """The literal a comment ("# ...") starts with, or NOTHING."""
    text = comment.lstrip("#").strip()
    depth, quote, end = 0, None, len(text)
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and (ch.isspace() or ch in ",:;"):
            end = i
            break
    try:
        return ast.literal_eval(text[:end])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return NOTHING


def _numeric(value):
    if isinstance(value, (list, tuple)):
        return all(_numeric(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_result(value, want, where):
    """value is what the README states: numbers to RTOL with the same shape,
    anything else equal."""
    if _numeric(want):
        try:
            got = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise AssertionError(
                f"{where}: {value!r} is not numeric, README states {want!r}"
            ) from None
        assert got.shape == np.shape(want), f"{where}: shape {got.shape}, README {np.shape(want)}"
        np.testing.assert_allclose(
            got,
            np.asarray(want, dtype=np.float64),
            rtol=RTOL,
            err_msg=f"{where}: README states {want!r}",
        )
    else:
        assert type(value) is type(want) or (
            isinstance(want, bool) and isinstance(value, np.bool_)
        ), f"{where}: a {type(value).__name__}, README states {want!r}"
        assert value == want, f"{where}: {value!r}, README states {want!r}"


def run_block(block, namespace, filename="README.md"):
    """Run one block in namespace; return the number of results checked."""
    tree = ast.parse(block.code, filename)
    results = {}  # block line -> stated literal
    for tok in tokenize.generate_tokens(io.StringIO(block.code).readline):
        if tok.type == tokenize.COMMENT:
            want = stated_result(tok.string)
            if want is not NOTHING:
                results[tok.start[0]] = want
    checked = {}
    for line, want in results.items():
        stmt = next((s for s in tree.body if s.lineno <= line <= s.end_lineno), None)
        if not isinstance(stmt, ast.Expr) or stmt.end_lineno != line:
            raise AssertionError(
                f"{filename}:{block.line + line - 1}: the result comment {want!r} does not end "
                f"a bare expression at the top level of its block, so it cannot be checked"
            )
        checked[id(stmt)] = want
    for stmt in tree.body:
        where = f"{filename}:{block.line + stmt.lineno - 1}: {ast.unparse(stmt)}"
        try:
            if id(stmt) in checked:
                value = eval(compile(ast.Expression(stmt.value), filename, "eval"), namespace)
                check_result(value, checked[id(stmt)], where)
            else:
                exec(compile(ast.Module([stmt], []), filename, "exec"), namespace)
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(f"{where} raised {type(exc).__name__}: {exc}") from exc
    return len(checked)


def run_markdown(text, filename="README.md"):
    """Run every block meant to run; return (namespace, results checked per block)."""
    namespace = {"__name__": "__readme__"}
    counts = [run_block(b, namespace, filename) if b.runs else None for b in python_blocks(text)]
    return namespace, counts


# ---------------------------------------------------------------------------
# The README
# ---------------------------------------------------------------------------
@needs_readme
def test_readme_python_blocks_run_as_documented(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, counts = run_markdown(README.read_text(encoding="utf-8"))
    assert any(n for n in counts if n), "no README block states a result"


@needs_readme
def test_readme_tutorial_example_runs_as_documented(tmp_path, monkeypatch):
    """The tutorial-001 example: its stated results are checked (forward and
    backward among them), and it leaves tutorial 001's numbers behind."""
    monkeypatch.chdir(tmp_path)
    text = README.read_text(encoding="utf-8")
    section = text.split("## A tutorial, reproduced", 1)[1].split("\n## ", 1)[0]
    (seed_block,) = python_blocks(section)
    assert seed_block.runs
    stated = {}
    for tok in tokenize.generate_tokens(io.StringIO(seed_block.code).readline):
        if tok.type == tokenize.COMMENT and stated_result(tok.string) is not NOTHING:
            stated[seed_block.code.splitlines()[tok.start[0] - 1].split("#")[0].strip()] = (
                stated_result(tok.string)
            )
    assert stated["net.forward([[1.0, 0.0]])"] == [[2.5]]
    assert stated["net.backward([2.0])"] == 0.25
    namespace, _ = run_markdown(section)  # later sections reuse the names
    net, hidden, output = namespace["net"], namespace["hidden"], namespace["output"]
    # the values tutorial 001 prints
    np.testing.assert_allclose(output.weights.ravel(), [0.985, 0.995], rtol=1e-12)
    np.testing.assert_allclose(hidden.weights, [[0.99, 0.49], [1.0, -0.5]], rtol=1e-12)
    np.testing.assert_allclose(output.dweights.ravel(), [1.5, 0.5], rtol=1e-12)
    assert net.loss == "squared_error"


@needs_readme
def test_readme_no_run_blocks_are_marked_before_their_fence():
    """A no-run marker stands on the line before a ```python fence, nowhere
    else (a marker left behind by an edit would skip nothing)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip() == NO_RUN:
            following = next((x for x in lines[i + 1 :] if x.strip()), "")
            assert following.startswith("```python"), (
                f"README.md:{i + 1}: {NO_RUN} before {following!r}"
            )


# ---------------------------------------------------------------------------
# The checker fails where the README is wrong
# ---------------------------------------------------------------------------
SEED = """\
```python
import cbp
net = cbp.Network([cbp.Dense(1, 1, "identity", weights=[[2.0]], bias=[0.5])])
net.forward([[1.0]])   # [[2.5]]
net.backward([2.0])    # 0.25, the loss
net.loss               # 'squared_error'
cbp.native_available() # did the compiled core load?
```
"""


def test_checker_accepts_the_right_results():
    namespace, counts = run_markdown(SEED)
    assert counts == [3]
    assert namespace["net"].loss == "squared_error"


@pytest.mark.parametrize(
    "wrong, message",
    [
        ("# [[2.5]]", "# [[2.6]]"),  # a wrong number
        ("# [[2.5]]", "# [2.5]"),  # a wrong shape
        ("# 0.25, the loss", "# 0.2500000001, the loss"),  # beyond 1e-12
        ("# 'squared_error'", "# 'half_squared_error'"),  # a wrong string
        ("# 'squared_error'", "# 1"),  # a string for a number
    ],
)
def test_checker_fails_on_a_wrong_result(wrong, message):
    with pytest.raises(AssertionError):
        run_markdown(SEED.replace(wrong, message))


def test_checker_fails_on_an_error_and_names_the_line():
    text = SEED.replace("net.loss ", "net.los ")
    with pytest.raises(AssertionError, match=r"README.md:6: net.los raised AttributeError"):
        run_markdown(text)


def test_checker_refuses_a_result_it_cannot_check():
    with pytest.raises(AssertionError, match="cannot be checked"):
        run_markdown("```python\nx = 1 + 1  # 2\n```\n")
    with pytest.raises(AssertionError, match="cannot be checked"):
        run_markdown("```python\nfor i in range(2):\n    i  # 0\n```\n")


def test_no_run_marker_skips_only_its_block():
    synopsis = "```python\nlayer = cbp.Dense(n_inputs, n_neurons)  # (n_inputs, n_neurons)\n```\n"
    namespace, counts = run_markdown(f"{NO_RUN}\n{synopsis}\n{SEED}")
    assert counts == [None, 3] and "layer" not in namespace
    with pytest.raises(AssertionError, match="NameError"):
        run_markdown(synopsis)


@pytest.mark.parametrize(
    "comment, want",
    [
        ("# [[2.5]]", [[2.5]]),
        ("# 0.25, the loss", 0.25),
        ("# [[1.5], [0.5]]: the seed's dL/dw5", [[1.5], [0.5]]),
        ("#   -1e-3;", -1e-3),
        ("# True", True),
        ("# 'a b', text", "a b"),
        ("# did the compiled core load?", NOTHING),
        ("# (batch, n_out); keeps what backward needs", NOTHING),
        ("# inverted dropout, active in fit only", NOTHING),
        ("# 2.5x faster", NOTHING),
    ],
)
def test_stated_result(comment, want):
    got = stated_result(comment)
    if want is NOTHING:
        assert got is NOTHING
    else:
        assert got == want and type(got) is type(want)
