"""BLAS threads chosen in-process (mmcli/threads.py) and the --threads option.

Nothing here is timed: the tests hold the choice (one thread below the threshold, the process's own count at or
above it, exactly N when given) and that the limit is in force inside a fit and lifted after it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import OPT_DEV, run_in_process
from threadpoolctl import threadpool_info

from mmcli import threads
from mmcli.lmm import LmmModel, indicator_term


def blas_counts() -> list[int]:
    return [int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]


def test_choice_from_the_order_of_the_dense_block():
    assert threads.threads_for(threads.TWO_THREADS_MIN_ORDER - 1) == 1
    assert threads.threads_for(threads.TWO_THREADS_MIN_ORDER) is None  # the process's own count
    with threads.use_threads(3):
        assert threads.threads_for(10) == 3 and threads.threads_for(10**5) == 3
    assert threads.threads_for(10) == 1  # the choice holds inside the block only


def test_use_threads_rejects_zero():
    with pytest.raises(ValueError), threads.use_threads(0):
        pass


def test_limit_in_force_during_a_fit_and_lifted_after(monkeypatch):
    """The core's BLAS calls run under the chosen limit: seen from inside an evaluation of the criterion."""
    before = blas_counts()
    seen: list[list[int]] = []
    import mmcli.lmm.model as model_module

    real = model_module.criterion_and_gradient

    def spy(*args, **kw):
        seen.append(blas_counts())
        return real(*args, **kw)

    monkeypatch.setattr(model_module, "criterion_and_gradient", spy)
    rng = np.random.default_rng(0)
    n = 200
    g = rng.integers(0, 10, n)
    y = rng.standard_normal(10)[g] + rng.standard_normal(n)
    term = indicator_term("g", ("(Intercept)",), g, [str(i) for i in range(10)], np.ones((n, 1)))
    with threads.use_threads(2):
        LmmModel(np.ones((n, 1)), y, [term]).fit(reml=False)
    assert seen and all(c and all(k == 2 for k in c) for c in seen)
    seen.clear()
    LmmModel(np.ones((n, 1)), y, [term]).fit(reml=False)  # a small block: one thread
    assert seen and all(c and all(k == 1 for k in c) for c in seen)
    assert blas_counts() == before


def test_command_line_threads_option():
    path = "sample_data/penicillin.csv"
    formula = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    one = run_in_process(["fit", path, formula, "--threads", "1", "--json"]).json()
    two = run_in_process(["fit", path, formula, "--threads", "2", "--json"]).json()
    assert abs(one["loglik"] - two["loglik"]) <= OPT_DEV
    bad = run_in_process(["fit", path, formula, "--threads", "0"])
    assert bad.code == 2 and bad.error_lines and "--threads" in bad.err
    for command in (
        ["ranef", path, formula],
        ["gamm", "sample_data/sleepstudy.csv", "Reaction ~ s(Days) + (1|Subject)"],
    ):
        assert run_in_process([*command, "--threads", "1", "--optimizer", "bobyqa", "--json"]).code == 0


def test_limit_reaches_the_lapack_of_a_crossed_fit():
    """scipy.linalg loads its own OpenBLAS on first import; a crossed fit's factorizations use it, so it must be
    loaded before the limit is set (a limit reaches only the libraries loaded then). Seen in a fresh process
    whose environment asks for two threads, from inside an evaluation of the criterion."""
    import os
    import subprocess
    import sys

    code = """
import json, sys
import json

import numpy as np
from threadpoolctl import threadpool_info
assert "scipy.linalg" not in sys.modules
import mmcli.lmm.model as mm
from mmcli.lmm import LmmModel, indicator_term
seen = []
real = mm.criterion_and_gradient
def spy(*a, **k):
    seen.append(sorted({(i["filepath"], int(i["num_threads"])) for i in threadpool_info() if i["user_api"] == "blas"}))
    return real(*a, **k)
mm.criterion_and_gradient = spy
rng = np.random.default_rng(1)
n = 400
a, b = rng.integers(0, 30, n), rng.integers(0, 12, n)
y = rng.standard_normal(30)[a] + rng.standard_normal(12)[b] + rng.standard_normal(n)
terms = [indicator_term(g, ("(Intercept)",), c, [str(i) for i in range(k)], np.ones((n, 1)))
         for g, c, k in (("a", a, 30), ("b", b, 12))]
LmmModel(np.ones((n, 1)), y, terms).fit(reml=False)
print(json.dumps(seen))
"""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout)
    libraries = {path for evaluation in seen for path, _ in evaluation}
    assert seen and any("scipy" in p and "numpy" not in p for p in libraries), libraries
    assert all(k == 1 for evaluation in seen for _, k in evaluation)


def test_fit_starts_blas_on_one_thread_and_raises_it_for_large_blocks():
    """The console script's `fit` starts numpy's OpenBLAS on one thread (its threads spin beside the fit
    otherwise), and a block of TWO_THREADS_MIN_ORDER or more gets the machine's cores. Not when the environment
    sets a count, and not for other commands. Each case in a fresh process: the count is read when BLAS loads."""
    import os
    import subprocess
    import sys

    code = """
import json, os, sys
from mmcli._entry import one_blas_thread
one_blas_thread(sys.argv[1:])
import numpy as np
from threadpoolctl import threadpool_info
from mmcli import threads
def counts():
    return sorted({int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"})
start = counts()
with threads.blas_threads(threads.TWO_THREADS_MIN_ORDER):
    large = counts()
print(json.dumps({"start": start, "large": large, "after": counts(), "cores": os.cpu_count()}))
"""
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    }

    def run(args: list[str], extra: dict[str, str]) -> dict:
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], env={**env, **extra}, capture_output=True, text=True, check=True
        )
        return json.loads(proc.stdout)

    fit = run(["fit"], {})
    assert fit["start"] == [1] and fit["after"] == [1] and fit["large"] == [fit["cores"]]
    given = run(["fit"], {"OPENBLAS_NUM_THREADS": "2"})
    assert given["start"] == [2] and given["large"] == [2]  # the environment's count is kept
    other = run(["gamm"], {})
    assert other["start"] == [fit["cores"]]  # OpenBLAS's own default: a thread per core
