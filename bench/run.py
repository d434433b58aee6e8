"""Benchmark mmcli against its baselines, as README.md describes: whole processes side by side, paired ratios, medians.

Every goal is a ratio between two whole processes run one after the other on the same machine in the same
run (medians of at least three runs each). The one exception is lme4, whose ``lmer(...)`` call is timed inside
R with ``system.time`` so that reading the data is left out. Peak resident memory comes from ``os.wait4``,
which reports each child's own ``ru_maxrss`` (KiB on Linux).

    .venv/bin/python bench/run.py                 # full sizes, 3 repeats
    .venv/bin/python bench/run.py --quick         # small sizes, to check the harness
    .venv/bin/python bench/run.py --only crossed --repeats 5
    .venv/bin/python bench/run.py --save bench/RESULTS.md

Runs are paired: each round runs every peer of a case once, in turn (mmcli, baseline, mmcli, baseline, ...), the
1-minute load average is recorded before every run, and a ratio is the median of the per-round ratios, so that a
drift of the machine's speed moves both sides of a pair. ``--busy`` runs a busy-loop process beside every run
(as a machine doing something else would), to show what BLAS threads and schedulers do under contention.

The data are simulated with fixed seeds into ``--out`` (bench/out, git-ignored) and reused while their
parameters are unchanged. The log-likelihoods of every peer that fits the same model must agree with mmcli's
to 1e-3: a fast wrong answer does not count.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SLEEPSTUDY = REPO / "sample_data" / "sleepstudy.csv"
LOGLIK_TOL = 1e-3
GENERATOR_VERSION = 1  # bump when a generator changes, so that stale files are rebuilt
MIB = 1024 * 1024

# ---------------------------------------------------------------------------------------------------------
# Processes


@dataclass
class Proc:
    """One finished (or killed) child process."""

    wall: float
    maxrss_kib: int
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool


def run_process(cmd: list[str], timeout: float, cwd: Path = REPO) -> Proc:
    """Run ``cmd`` to the end and return its wall time and its own peak RSS (from ``os.wait4``).

    The child gets its own session so that a timeout kills it and everything it started (Rscript execs R;
    Python may start BLAS threads). Output goes to temporary files so a chatty child cannot fill a pipe.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        lock = threading.Lock()
        state = {"done": False, "timed_out": False}
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, start_new_session=True)

        def kill() -> None:
            with lock:
                if not state["done"]:
                    state["timed_out"] = True
                    os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        # Wait for the exit without reaping, so the timer can never signal a recycled pid.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        wall = time.perf_counter() - t0
        with lock:
            state["done"] = True
        timer.cancel()
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Proc(
            wall=wall,
            maxrss_kib=rusage.ru_maxrss,
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            timed_out=bool(state["timed_out"]),
        )


# ---------------------------------------------------------------------------------------------------------
# What a peer prints


@dataclass
class Parsed:
    loglik: float | None = None
    inner_seconds: float | None = None  # time measured inside the process (lme4's lmer call)
    fit_seconds: float | None = None  # informative: statsmodels' fit alone, after reading
    notes: list[str] = field(default_factory=list)


def parse_nothing(stdout: str) -> Parsed:
    return Parsed()


def parse_mmcli_json(stdout: str) -> Parsed:
    d = json.loads(stdout)
    notes = []
    if d.get("converged") is False:
        notes.append("mmcli: not converged")
    if d.get("singular"):
        notes.append("mmcli: singular fit")
    return Parsed(loglik=float(d["loglik"]), notes=notes)


def parse_tagged(stdout: str) -> Parsed:
    """Read the ``LOGLIK x``, ``ELAPSED x`` and ``NOTE text`` lines that the baseline scripts below print."""
    p = Parsed()
    for line in stdout.splitlines():
        tag, _, rest = line.strip().partition(" ")
        if tag == "LOGLIK":
            p.loglik = float(rest)
        elif tag == "ELAPSED":
            p.inner_seconds = float(rest)
        elif tag == "FIT_SECONDS":
            p.fit_seconds = float(rest)
        elif tag == "NOTE":
            p.notes.append(rest.strip())
    return p


# ---------------------------------------------------------------------------------------------------------
# Peers and their commands


@dataclass
class Peer:
    key: str  # "mmcli", "pandas", "statsmodels", "lme4"
    label: str  # what the table calls it
    cmd: list[str]
    parse: Callable[[str], Parsed]
    timeout: float
    check_cmd: list[str] | None = None  # untimed run that prints the log-likelihood, if cmd does not
    check_parse: Callable[[str], Parsed] = parse_tagged
    warmup: bool = True  # one untimed run first (page cache, .pyc files); off for slow baselines
    ok_codes: tuple[int, ...] = (0,)
    missing: str | None = None  # why this peer cannot run here ("Rscript not found")


@dataclass
class Result:
    peer: Peer
    seconds: list[float] = field(default_factory=list)  # wall, or inner time when the peer reports one
    wall: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)  # the round of each timed run (for paired ratios)
    loads: list[float] = field(default_factory=list)  # the 1-minute load average before each timed run
    loglik: float | None = None
    notes: list[str] = field(default_factory=list)
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and bool(self.seconds)

    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    def median_rss_mib(self) -> float | None:
        return statistics.median(self.rss_kib) / 1024 if self.rss_kib else None


def first_error_line(proc: Proc) -> str:
    """The last line that mentions an error (R's messages continue on the next line), or the last line."""
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    hits = [i for i, ln in enumerate(lines) if "error" in ln.lower()]
    if hits:
        i = hits[-1]
        text = " ".join(lines[i : i + 2]) if lines[i].endswith(":") else lines[i]
    else:
        text = lines[-1] if lines else ""
    return f"exit {proc.returncode}: {text[:200]}"


def load_average() -> float:
    """The 1-minute load average (/proc/loadavg), as the kernel counts runnable and waiting processes."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]


def paired_ratio(a: Result, b: Result) -> float | None:
    """The median over rounds of a's time / b's time in the same round (None when no round has both)."""
    bt = dict(zip(b.rounds, b.seconds))
    ratios = [t / bt[r] for r, t in zip(a.rounds, a.seconds) if bt.get(r)]
    return statistics.median(ratios) if ratios else None


def run_once(res: Result, timed: bool, check: bool = False, round_no: int = -1) -> None:
    """Run the peer's command (or its check command) and fold what it printed into ``res``."""
    peer = res.peer
    cmd = peer.check_cmd if check and peer.check_cmd is not None else peer.cmd
    parse = peer.check_parse if check and peer.check_cmd is not None else peer.parse
    load = load_average()
    proc = run_process(cmd, peer.timeout)
    if proc.timed_out:
        res.timed_out = True
        return
    if proc.returncode not in peer.ok_codes:
        res.error = first_error_line(proc)
        return
    try:
        parsed = parse(proc.stdout)
    except (ValueError, KeyError) as exc:
        res.error = f"could not read its output ({exc.__class__.__name__}: {exc}): {proc.stdout[:120]!r}"
        return
    if parsed.loglik is not None:
        res.loglik = parsed.loglik
    for note in parsed.notes:
        if note not in res.notes:
            res.notes.append(note)
    if timed:
        res.rounds.append(round_no)
        res.loads.append(load)
        res.wall.append(proc.wall)
        res.rss_kib.append(proc.maxrss_kib)
        res.seconds.append(parsed.inner_seconds if parsed.inner_seconds is not None else proc.wall)
        if parsed.fit_seconds is not None:
            res.fit_seconds.append(parsed.fit_seconds)


def measure(peers: list[Peer], repeats: int, log: Callable[[str], None]) -> dict[str, Result]:
    """Interleave the peers, one process at a time: warm-ups, then ``repeats`` rounds of each peer in turn."""
    results = {p.key: Result(p) for p in peers}
    for peer in peers:
        res = results[peer.key]
        if peer.missing:
            res.error = peer.missing
            continue
        if peer.check_cmd is not None:
            log(f"    {peer.label}: check run")
            run_once(res, timed=False, check=True)
        elif peer.warmup:
            log(f"    {peer.label}: warm-up")
            run_once(res, timed=False)
        if res.timed_out:
            res.error = f"timed out (> {peer.timeout:.0f} s)"
    for r in range(repeats):
        for peer in peers:
            res = results[peer.key]
            if res.error is not None or res.timed_out:
                continue
            run_once(res, timed=True, round_no=r)
            if res.seconds and not res.timed_out and res.error is None:
                log(f"    {peer.label}: run {r + 1}/{repeats}: {res.seconds[-1]:.3f} s")
            else:
                log(f"    {peer.label}: run {r + 1}/{repeats}: {res.error or 'timed out'}")
    return results


# ---------------------------------------------------------------------------------------------------------
# Data


def generate(kind: str, params: dict, csv: Path) -> None:
    """Simulate one data set and write it atomically (runs in a child process: see ``ensure_data``).

    ``digits=None`` keeps pandas' shortest round-trip float text (full precision).
    """
    df = GENERATORS[kind](params)
    digits = params["digits"]
    tmp = csv.with_suffix(".tmp")
    df.to_csv(tmp, index=False, float_format=None if digits is None else f"%.{digits}g")
    tmp.replace(csv)


def ensure_data(python: str, out: Path, name: str, kind: str, params: dict, digits: int | None) -> Path:
    """Return ``out/name.csv``, simulating it unless a file made with the same parameters is there.

    The simulation runs in a child process. On Linux a child's ``ru_maxrss`` starts from its parent's peak
    RSS (the vfork'ed child execs from the parent's address space), so the runner itself must never hold
    much memory, or every peak it measures afterwards would be at least that.
    """
    params = {**params, "kind": kind, "digits": digits, "generator_version": GENERATOR_VERSION}
    csv, meta = out / f"{name}.csv", out / f"{name}.params.json"
    if csv.exists() and meta.exists():
        try:
            if json.loads(meta.read_text()) == params:
                return csv
        except ValueError:
            pass
    t0 = time.perf_counter()
    subprocess.run([python, __file__, "--generate-one", kind, json.dumps(params), str(csv)], check=True)
    meta.write_text(json.dumps(params, indent=1) + "\n")
    print(
        f"  wrote {csv.name}: {params['n']:,} rows, {csv.stat().st_size / 1e6:.1f} MB "
        f"in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return csv


def level_names(prefix: str, k: int) -> list[str]:
    width = len(str(k))
    return [f"{prefix}{i:0{width}d}" for i in range(1, k + 1)]


def unbalanced_groups(rng, n: int, k: int, at_least: int):  # type: ignore[no-untyped-def]
    """Group index per row: every group gets ``at_least`` rows, the rest go by log-normal weights."""
    import numpy as np

    base = np.repeat(np.arange(k), at_least)
    w = rng.lognormal(0.0, 1.0, k)
    extra = rng.choice(k, size=n - len(base), p=w / w.sum())
    idx = np.concatenate([base, extra])
    rng.shuffle(idx)
    return idx


def make_big(p: dict):  # type: ignore[no-untyped-def]
    """y = 1 + 0.5 x1 - 0.2 x2 + b_g + e, b_g ~ N(0, 1), e ~ N(0, 2^2); g has string levels g00001...."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(p["seed"])
    n, k = p["n"], p["groups"]
    g = unbalanced_groups(rng, n, k, at_least=1)
    x1 = rng.standard_normal(n)
    x2 = rng.uniform(0.0, 10.0, n)
    b = rng.normal(0.0, 1.0, k)
    y = 1.0 + 0.5 * x1 - 0.2 * x2 + b[g] + rng.normal(0.0, 2.0, n)
    names = np.array(level_names("g", k), dtype=object)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": names[g]})


def make_crossed(p: dict):  # type: ignore[no-untyped-def]
    """InstEval's shape: students s and instructors d crossed, each instructor in one department.

    y = 3 + 0.1 service + b_s + b_d + b_dept + e with standard deviations near lme4's InstEval estimates
    (0.33, 0.52, 0.08; residual 1.18). ``service`` is a 0/1 numeric column.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(p["seed"])
    n, ks, kd, kdept = p["n"], p["s"], p["d"], p["dept"]
    s = unbalanced_groups(rng, n, ks, at_least=1)
    # Instructors are spread independently of students; every instructor appears at least once.
    wd = rng.lognormal(0.0, 1.0, kd)
    d = np.concatenate([np.arange(kd), rng.choice(kd, size=n - kd, p=wd / wd.sum())])
    rng.shuffle(d)
    dept_of_d = np.concatenate([np.arange(kdept), rng.integers(0, kdept, kd - kdept)])
    rng.shuffle(dept_of_d)
    dept = dept_of_d[d]
    service = (rng.uniform(size=n) < 0.43).astype(np.int64)
    y = (
        3.0
        + 0.1 * service
        + rng.normal(0.0, 0.33, ks)[s]
        + rng.normal(0.0, 0.52, kd)[d]
        + rng.normal(0.0, 0.08, kdept)[dept]
        + rng.normal(0.0, 1.18, n)
    )
    return pd.DataFrame(
        {
            "y": y,
            "service": service,
            "s": np.array(level_names("s", ks), dtype=object)[s],
            "d": np.array(level_names("d", kd), dtype=object)[d],
            "dept": np.array(level_names("dept", kdept), dtype=object)[dept],
        }
    )


def make_slopes(p: dict):  # type: ignore[no-untyped-def]
    """y = 1 + 0.5 x + b0_g + b1_g x + e; (b0, b1) sd (1, 0.5), correlation 0.3; e ~ N(0, 1); x ~ N(0, 1)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(p["seed"])
    n, k = p["n"], p["groups"]
    g = unbalanced_groups(rng, n, k, at_least=2)
    x = rng.standard_normal(n)
    sd = np.array([1.0, 0.5])
    cov = np.outer(sd, sd) * np.array([[1.0, 0.3], [0.3, 1.0]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=k)
    y = 1.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(0.0, 1.0, n)
    names = np.array(level_names("g", k), dtype=object)
    return pd.DataFrame({"y": y, "x": x, "g": names[g]})


def zipf_levels(rng, n: int, k: int, exponent: float):  # type: ignore[no-untyped-def]
    """Level index per row with Zipf-like frequencies (the r-th most frequent level ~ 1 / r^exponent), every
    level at least once, shuffled; level numbers are shuffled too, so frequency is not level order."""
    import numpy as np

    w = 1.0 / np.arange(1, k + 1) ** exponent
    idx = np.concatenate([np.arange(k), rng.choice(k, size=n - k, p=w / w.sum())])
    rng.shuffle(idx)
    return rng.permutation(k)[idx]


def make_zipf(p: dict):  # type: ignore[no-untyped-def]
    """A realistic crossed design: A (e.g. users) and B (e.g. items) crossed, each with Zipf-like frequencies
    (a few very frequent levels, a long tail seen once or twice). y = 2 + 0.3 x + a + b + e with sd 0.6, 0.4, 1."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(p["seed"])
    n, ka, kb = p["n"], p["a"], p["b"]
    a = zipf_levels(rng, n, ka, p.get("exponent", 1.0))
    b = zipf_levels(rng, n, kb, p.get("exponent", 1.0))
    x = rng.standard_normal(n)
    y = 2.0 + 0.3 * x + rng.normal(0.0, 0.6, ka)[a] + rng.normal(0.0, 0.4, kb)[b] + rng.normal(0.0, 1.0, n)
    return pd.DataFrame(
        {"y": y, "x": x, "A": np.array(level_names("a", ka), dtype=object)[a],
         "B": np.array(level_names("b", kb), dtype=object)[b]}
    )  # fmt: skip


def make_gamm(p: dict):  # type: ignore[no-untyped-def]
    """y = 2 sin(2 pi x) + b_g + e, x ~ U(0, 1), b_g ~ N(0, 1), e ~ N(0, 1): one smooth, one random intercept."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(p["seed"])
    n, k = p["n"], p["groups"]
    g = unbalanced_groups(rng, n, k, at_least=1)
    x = rng.uniform(0.0, 1.0, n)
    b = rng.normal(0.0, 1.0, k)
    y = 2.0 * np.sin(2 * np.pi * x) + b[g] + rng.normal(0.0, 1.0, n)
    names = np.array(level_names("g", k), dtype=object)
    return pd.DataFrame({"y": y, "x": x, "g": names[g]})


def make_binary(p: dict):  # type: ignore[no-untyped-def]
    """y ~ Bernoulli(plogis(-0.5 + 0.8 x1 - 0.1 x2 + b_g)), b_g ~ N(0, 1); x1 ~ N(0, 1), x2 ~ U(0, 10)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(p["seed"])
    n, k = p["n"], p["groups"]
    g = unbalanced_groups(rng, n, k, at_least=2)
    x1 = rng.standard_normal(n)
    x2 = rng.uniform(0.0, 10.0, n)
    b = rng.normal(0.0, 1.0, k)
    eta = -0.5 + 0.8 * x1 - 0.1 * x2 + b[g]
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
    names = np.array(level_names("g", k), dtype=object)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": names[g]})


GENERATORS = {
    "big": make_big,
    "crossed": make_crossed,
    "slopes": make_slopes,
    "zipf": make_zipf,
    "gamm": make_gamm,
    "binary": make_binary,
}


def ensure_parquet(python: str, csv: Path, files: int) -> Path:
    """The CSV's rows as Parquet: one file (``files`` = 1, ``NAME.parquet``) or a directory of ``files`` files
    of consecutive rows (``NAME.parts``), made in a child process (the runner must stay small) and reused while
    newer than the CSV."""
    target = csv.with_suffix(".parquet") if files == 1 else csv.with_suffix(f".parts{files}")
    if target.exists() and target.stat().st_mtime >= csv.stat().st_mtime:
        return target
    code = (
        "import sys, pathlib, pyarrow.csv as pc, pyarrow.parquet as pq\n"
        "src, dst, k = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])\n"
        "t = pc.read_csv(src)\n"
        "if k == 1:\n    pq.write_table(t, dst)\n"
        "else:\n"
        "    dst.mkdir(exist_ok=True)\n"
        "    step = -(-t.num_rows // k)\n"
        "    for i in range(k):\n"
        "        pq.write_table(t.slice(i * step, step), dst / f'part{i:03d}.parquet')\n"
    )
    subprocess.run([python, "-c", code, str(csv), str(target), str(files)], check=True)
    return target


def ensure_insteval(out: Path, rows: int | None) -> Path | None:
    """lme4's own InstEval as CSV (all 73,421 rows, or the first ``rows``), exported by R; None without R."""
    csv = out / (f"insteval_{rows}.csv" if rows else "insteval.csv")
    if csv.exists():
        return csv
    head = f"d <- head(d, {rows}); " if rows else ""
    code = (
        "suppressMessages(library(lme4)); d <- InstEval; "
        f"{head}d$service <- as.integer(d$service == '1'); write.csv(d, '{csv}', row.names = FALSE)"
    )
    if shutil.which("Rscript") is None or run_process(["Rscript", "-e", code], 300).returncode != 0:
        return None
    return csv


# ---------------------------------------------------------------------------------------------------------
# Baseline programs

STATSMODELS_SCRIPT = """
import sys, time, warnings
import pandas as pd
import statsmodels.formula.api as smf
path, formula, re_formula = sys.argv[1:4]
df = pd.read_csv(path)
t0 = time.perf_counter()
kw = {"re_formula": re_formula} if re_formula else {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    r = smf.mixedlm(formula, df, groups=df["g"], **kw).fit(reml=False)
print("FIT_SECONDS", time.perf_counter() - t0)
print("LOGLIK", repr(float(r.llf)))
if not r.converged:
    print("NOTE statsmodels: not converged")
for m in sorted({str(w.message).splitlines()[0][:100] for w in caught}):
    print("NOTE statsmodels:", m)
"""

R_LMER_SCRIPT = """
suppressMessages(library(lme4))
path <- commandArgs(TRUE)[1]
form <- as.formula(commandArgs(TRUE)[2])
d <- if (requireNamespace("data.table", quietly = TRUE)) {
  data.table::fread(path, data.table = FALSE, stringsAsFactors = TRUE)
} else read.csv(path, stringsAsFactors = TRUE)
t <- system.time(m <- lmer(form, d, REML = FALSE))
cat(sprintf("ELAPSED %.4f\\nLOGLIK %.10f\\n", t[["elapsed"]], as.numeric(logLik(m))))
for (msg in m@optinfo$conv$lme4$messages) cat("NOTE lme4:", msg, "\\n")
if (isSingular(m)) cat("NOTE lme4: singular fit\\n")
"""

R_GAMM4_SCRIPT = """
suppressMessages({library(gamm4); library(mgcv)})
path <- commandArgs(TRUE)[1]
d <- read.csv(path, stringsAsFactors = TRUE)
t <- system.time(m <- gamm4(y ~ s(x), random = ~ (1 | g), data = d, REML = TRUE))
cat(sprintf("ELAPSED %.4f\\nLOGLIK %.10f\\n", t[["elapsed"]], as.numeric(logLik(m$mer))))
cat(sprintf("NOTE gamm4: edf of s(x) %.4f\\n", sum(m$gam$edf[-1])))
"""

R_BAM_SCRIPT = """
suppressMessages(library(mgcv))
path <- commandArgs(TRUE)[1]
d <- read.csv(path, stringsAsFactors = TRUE)
# chunk.size above the row count: bam otherwise sets up s(x)'s basis from a random 10,000-row subsample of the
# data (its mini.mf), a different basis from gam's and gamm4's and so a different REML score (on 30,000 of these
# rows: 0.13 higher by default, equal to gamm4's to 7e-6 with chunk.size = n; the time is the same).
t <- system.time(m <- bam(y ~ s(x) + s(g, bs = "re"), data = d, method = "REML", chunk.size = nrow(d) + 1))
cat(sprintf("ELAPSED %.4f\\nLOGLIK %.10f\\n", t[["elapsed"]], -m$gcv.ubre))
sm <- m$smooth[[1]]
cat(sprintf("NOTE bam: edf of s(x) %.4f, REML score %.6f\\n",
            sum(m$edf[sm$first.para:sm$last.para]), m$gcv.ubre))
"""
R_GLMER_SCRIPT = R_LMER_SCRIPT.replace("lmer(form, d, REML = FALSE)", "glmer(form, d, family = binomial)")

SLEEPSTUDY_R = "suppressMessages(library(lme4)); print(lmer(Reaction ~ Days + (1|Subject), sleepstudy, REML=FALSE))"
SLEEPSTUDY_R_CHECK = (
    "suppressMessages(library(lme4)); m <- lmer(Reaction ~ Days + (1|Subject), sleepstudy, REML=FALSE); "
    'cat(sprintf("LOGLIK %.10f\\n", as.numeric(logLik(m))))'
)
CONFINT_R = (
    "suppressMessages(library(lme4)); m <- lmer(Reaction ~ Days + (Days|Subject), sleepstudy); print(confint(m))"
)
CONFINT_R_CHECK = (
    "suppressMessages(library(lme4)); m <- lmer(Reaction ~ Days + (Days|Subject), sleepstudy); "
    'cat(sprintf("LOGLIK %.10f\\n", as.numeric(logLik(m))))'
)


@dataclass
class Env:
    python: str
    mmcli: str
    mmcli_missing: str | None
    r_missing: str | None
    statsmodels_missing: str | None
    timeout: float


def r_status() -> str | None:
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    try:
        proc = run_process(["Rscript", "-e", "suppressMessages(library(lme4))"], 120)
    except OSError as exc:
        return f"Rscript failed: {exc}"
    return None if proc.returncode == 0 else "lme4 not installed in R"


def mmcli_status(mmcli: str) -> str | None:
    if not Path(mmcli).exists() and shutil.which(mmcli) is None:
        return f"{mmcli} not found"
    cmd = [mmcli, "fit", str(SLEEPSTUDY), "--y", "Reaction", "--fixed", "Days", "--group", "Subject"]
    proc = run_process([*cmd, "--format", "json"], 120)
    if proc.returncode not in (0, 3):
        return "mmcli does not work yet: " + first_error_line(proc)
    try:
        parse_mmcli_json(proc.stdout)
    except (ValueError, KeyError) as exc:
        return f"mmcli printed no usable JSON ({exc})"
    return None


def mmcli_peer(env: Env, args: list[str], check_args: list[str] | None = None) -> Peer:
    return Peer(
        key="mmcli",
        label="mmcli",
        cmd=[env.mmcli, *args],
        parse=parse_mmcli_json if check_args is None else parse_nothing,
        check_cmd=None if check_args is None else [env.mmcli, *check_args],
        check_parse=parse_mmcli_json,
        timeout=5 * env.timeout,
        ok_codes=(0, 3),
        missing=env.mmcli_missing,
    )


def lme4_peer(env: Env, csv: Path, formula: str) -> Peer:
    return Peer(
        key="lme4",
        label="lme4 lmer() only",
        cmd=["Rscript", "-e", R_LMER_SCRIPT, str(csv), formula],
        parse=parse_tagged,
        timeout=5 * env.timeout,
        warmup=False,  # its timing is internal: the page cache does not matter
        missing=env.r_missing,
    )


def glmer_peer(env: Env, csv: Path, formula: str) -> Peer:
    return Peer(
        key="lme4",
        label="lme4 glmer() only",
        cmd=["Rscript", "-e", R_GLMER_SCRIPT, str(csv), formula],
        parse=parse_tagged,
        timeout=5 * env.timeout,
        warmup=False,  # its timing is internal: the page cache does not matter
        missing=env.r_missing,
    )


def statsmodels_peer(env: Env, csv: Path, formula: str, re_formula: str = "") -> Peer:
    return Peer(
        key="statsmodels",
        label="statsmodels mixedlm",
        cmd=[env.python, "-c", STATSMODELS_SCRIPT, str(csv), formula, re_formula],
        parse=parse_tagged,
        timeout=env.timeout,
        warmup=False,
        missing=env.statsmodels_missing,
    )


def pandas_peer(env: Env, csv: Path) -> Peer:
    return Peer(
        key="pandas",
        label="pandas.read_csv",
        cmd=[env.python, "-c", f"import pandas; pandas.read_csv({str(csv)!r})"],
        parse=parse_nothing,
        timeout=env.timeout,
    )


# ---------------------------------------------------------------------------------------------------------
# Cases


@dataclass
class Goal:
    baseline: str  # peer key
    max_ratio: float | None  # mmcli seconds / baseline seconds must be <= this; None: informative only
    text: str
    loglik_rel: float | None = None  # the log-likelihoods must agree to this, relative (default: LOGLIK_TOL abs)


@dataclass
class Case:
    name: str
    rows: int
    csv: Path
    peers: list[Peer]
    goals: list[Goal]
    memory_goal: float | None = None  # mmcli peak RSS / CSV bytes must be <= this
    rss_max_mib: float | None = None  # mmcli's largest process (a Dask worker, say) must stay below this
    rss_below: str | None = None  # peer key: mmcli's peak RSS must be below that peer's
    higher_ok: bool = False  # a log-likelihood above the baseline's by more than the tolerance passes (a better
    # optimum: glmer's second stage stops loosely); only a lower one is a disagreement


def sizes(quick: bool) -> dict:
    if quick:
        return {
            "big": [(10_000, 2_000), (100_000, 2_000)],
            "crossed": {"n": 7_342, "s": 297, "d": 113, "dept": 14},
            "slopes": {"n": 20_000, "groups": 1_000},
            "zipf": {"n": 10_000, "a": 1_000, "b": 300},
            "insteval": 7_342,
            "huge": (200_000, 2_000),
            "gamm": {"n": 10_000, "groups": 100},
            "glmm": [(10_000, 200)],
        }
    return {
        "big": [(100_000, 20_000), (1_000_000, 20_000)],
        "crossed": {"n": 73_421, "s": 2_972, "d": 1_128, "dept": 14},
        "slopes": {"n": 200_000, "groups": 10_000},
        "zipf": {"n": 100_000, "a": 10_000, "b": 3_000},
        "insteval": None,  # all of lme4's InstEval
        "huge": (10_000_000, 100_000),
        "gamm": {"n": 100_000, "groups": 1_000},
        "glmm": [(100_000, 2_000), (1_000_000, 2_000)],
    }


def short(n: int) -> str:
    e = len(str(n)) - 1
    return f"1e{e}" if n == 10**e else str(n)


def case_names(quick: bool) -> list[str]:
    sz = sizes(quick)
    huge = short(sz["huge"][0])
    return [
        "sleepstudy",
        *(f"big-{short(n)}" for n, _ in sz["big"]),
        "crossed",
        "slopes",
        "confint",
        "ddf-crossed",
        "zipf-crossed",
        "insteval",
        f"load-{huge}",
        f"parquet-{huge}",
        f"dask-{huge}",
        "gamm-tp",
        *(f"glmm-{short(n)}" for n, _ in sz["glmm"]),
    ]


def build_cases(env: Env, out: Path, quick: bool, digits: int | None, wanted: Callable[[str], bool]) -> list[Case]:
    sz = sizes(quick)
    cases = []
    if wanted("sleepstudy"):
        base = ["fit", str(SLEEPSTUDY), "--y", "Reaction", "--fixed", "Days", "--group", "Subject"]
        r = Peer(
            key="lme4",
            label="Rscript lmer (whole)",
            cmd=["Rscript", "-e", SLEEPSTUDY_R],
            parse=parse_nothing,
            check_cmd=["Rscript", "-e", SLEEPSTUDY_R_CHECK],
            timeout=5 * env.timeout,
            missing=env.r_missing,
        )
        cases.append(
            Case(
                "sleepstudy",
                180,
                SLEEPSTUDY,
                [mmcli_peer(env, base, [*base, "--format", "json"]), r],
                [Goal("lme4", 0.6, "≤ 0.6")],
            )
        )
    biggest = max(n for n, _ in sz["big"])
    for n, k in sz["big"]:
        name = f"big-{short(n)}"
        if not wanted(name):
            continue
        csv = ensure_data(
            env.python,
            out,
            f"big_{short(n)}_g{k}",
            "big",
            {"n": n, "groups": k, "seed": 1_000 + n // 1_000},
            digits,
        )
        formula = "y ~ x1 + x2 + (1 | g)"
        goals_here = n == biggest  # the goals are set for the 1e6-row file only
        cases.append(
            Case(
                name,
                n,
                csv,
                [
                    mmcli_peer(env, ["fit", str(csv), formula, "--format", "json", "--ddf", "none"]),  # as lmer: no df
                    pandas_peer(env, csv),
                    statsmodels_peer(env, csv, "y ~ x1 + x2"),
                    lme4_peer(env, csv, formula),
                ],
                [
                    Goal("pandas", 2.5, "≤ 2.5"),
                    Goal("statsmodels", 0.1, "≤ 0.1 (10× faster)"),
                    Goal("lme4", None, "—"),
                ]
                if goals_here
                else [Goal("pandas", None, "—"), Goal("statsmodels", None, "—"), Goal("lme4", None, "—")],
                memory_goal=3.0 if goals_here else None,
            )
        )
    if wanted("crossed"):
        p = sz["crossed"]
        csv = ensure_data(env.python, out, f"crossed_{p['n']}_s{p['s']}", "crossed", {**p, "seed": 73_421}, digits)
        formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
        cases.append(
            Case(
                "crossed",
                p["n"],
                csv,
                [
                    mmcli_peer(env, ["fit", str(csv), formula, "--format", "json", "--ddf", "none"]),  # as lmer: no df
                    lme4_peer(env, csv, formula),
                ],
                [Goal("lme4", 0.1, "≤ 0.1 (10× faster)")],
            )
        )
    if wanted("confint"):  # profile intervals, whole processes: mmcli confint against R's confint(lmer(...))
        formula = "Reaction ~ Days + (Days | Subject)"
        fit = ["fit", str(SLEEPSTUDY), formula, "--reml", "--format", "json", "--ddf", "none"]
        r = Peer(
            key="lme4",
            label="Rscript confint(lmer) (whole)",
            cmd=["Rscript", "-e", CONFINT_R],
            parse=parse_nothing,
            check_cmd=["Rscript", "-e", CONFINT_R_CHECK],
            timeout=5 * env.timeout,
            missing=env.r_missing,
        )
        confint = ["confint", str(SLEEPSTUDY), formula, "--reml", "--format", "json"]
        cases.append(Case("confint", 180, SLEEPSTUDY, [mmcli_peer(env, confint, fit), r], [Goal("lme4", 0.5, "≤ 0.5")]))
    if wanted("ddf-crossed"):  # what Satterthwaite's df add to a large crossed fit: less than the fit itself
        p = sz["crossed"]
        csv = ensure_data(env.python, out, f"crossed_{p['n']}_s{p['s']}", "crossed", {**p, "seed": 73_421}, digits)
        formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
        bare = mmcli_peer(env, ["fit", str(csv), formula, "--format", "json", "--ddf", "none"])
        bare = dataclasses.replace(bare, key="fit-only", label="mmcli fit --ddf none")
        with_df = mmcli_peer(env, ["fit", str(csv), formula, "--format", "json", "--ddf", "satterthwaite"])
        cases.append(Case("ddf-crossed", p["n"], csv, [with_df, bare], [Goal("fit-only", 2.0, "≤ 2 (df cost < fit)")]))
    if wanted("slopes"):
        p = sz["slopes"]
        csv = ensure_data(env.python, out, f"slopes_{p['n']}_g{p['groups']}", "slopes", {**p, "seed": 200_000}, digits)
        formula = "y ~ x + (x | g)"
        cases.append(
            Case(
                "slopes",
                p["n"],
                csv,
                [
                    mmcli_peer(env, ["fit", str(csv), formula, "--format", "json", "--ddf", "none"]),  # as lmer: no df
                    lme4_peer(env, csv, formula),
                    statsmodels_peer(env, csv, "y ~ x", "~x"),
                ],
                [Goal("lme4", None, "—"), Goal("statsmodels", None, "—")],
            )
        )
    if wanted("gamm-tp"):  # one tp smooth and a random intercept: mmcli gamm against gamm4 and mgcv's bam
        p = sz["gamm"]
        csv = ensure_data(env.python, out, f"gamm_{p['n']}_g{p['groups']}", "gamm", {**p, "seed": 16}, digits)
        formula = "y ~ s(x) + (1 | g)"

        def r_peer(key: str, label: str, script: str) -> Peer:
            return Peer(
                key=key,
                label=label,
                cmd=["Rscript", "-e", script, str(csv)],
                parse=parse_tagged,
                timeout=5 * env.timeout,
                warmup=False,
                missing=env.r_missing,
            )

        cases.append(
            Case(
                "gamm-tp",
                p["n"],
                csv,
                [
                    mmcli_peer(env, ["gamm", str(csv), formula, "--format", "json"]),
                    r_peer("gamm4", "gamm4() only", R_GAMM4_SCRIPT),
                    r_peer("bam", "mgcv bam() only (basis from all rows)", R_BAM_SCRIPT),
                ],
                [Goal("gamm4", 1.0, "≤ 1 (faster)"), Goal("bam", 1.0, "≤ 1 (faster)")],
            )
        )
    cases += scale_cases(env, out, quick, digits, wanted)
    cases += glmm_cases(env, out, sz, digits, wanted)
    return cases


def scale_cases(env: Env, out: Path, quick: bool, digits: int | None, wanted: Callable[[str], bool]) -> list[Case]:
    """The crossed designs at scale (Zipf-like frequencies; lme4's InstEval) and the 1e7-row data: CSV against
    pandas.read_csv, the same rows as Parquet, and as 20 Parquet files fitted on a 2-worker Dask cluster."""
    sz = sizes(quick)
    cases = []
    if wanted("zipf-crossed"):
        p = sz["zipf"]
        csv = ensure_data(env.python, out, f"zipf_{short(p['n'])}_{p['a']}x{p['b']}", "zipf", {**p, "seed": 7}, digits)
        formula = "y ~ x + (1 | A) + (1 | B)"
        cases.append(
            Case(
                "zipf-crossed",
                p["n"],
                csv,
                [mmcli_peer(env, ["fit", str(csv), formula, "--json", "--ddf", "none"]), lme4_peer(env, csv, formula)],
                [Goal("lme4", 0.2, "≤ 0.2 (5× faster)")],
                rss_below="lme4",
            )
        )
    if wanted("insteval"):
        csv = ensure_insteval(out, sz["insteval"])
        formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
        if csv is not None:
            cases.append(
                Case(
                    "insteval",
                    csv.read_bytes().count(b"\n") - 1,
                    csv,
                    [
                        mmcli_peer(env, ["fit", str(csv), formula, "--json", "--ddf", "none"]),
                        lme4_peer(env, csv, formula),
                    ],
                    [Goal("lme4", 0.1, "≤ 0.1 (10× faster)")],
                )
            )
    n, k = sz["huge"]
    huge = short(n)
    if not any(wanted(f"{w}-{huge}") for w in ("load", "parquet", "dask")):
        return cases
    csv = ensure_data(
        env.python, out, f"big_{huge}_g{k}", "big", {"n": n, "groups": k, "seed": 1_000 + n // 1_000}, digits
    )
    formula = "y ~ x1 + x2 + (1 | g)"
    fit = ["fit", formula, "--json", "--ddf", "none"]
    if wanted(f"load-{huge}"):
        cases.append(
            Case(
                f"load-{huge}",
                n,
                csv,
                [mmcli_peer(env, [fit[0], str(csv), *fit[1:]]), pandas_peer(env, csv)],
                [Goal("pandas", 2.0, "≤ 2 (whole process)")],
                memory_goal=2.0,
            )
        )
    if wanted(f"parquet-{huge}"):
        pqt = ensure_parquet(env.python, csv, 1)
        cases.append(
            Case(
                f"parquet-{huge}",
                n,
                csv,
                [mmcli_peer(env, [fit[0], str(pqt), *fit[1:]]), pandas_peer(env, csv)],
                [Goal("pandas", 1.0, "≤ 1 (Parquet fit vs CSV read)")],
            )
        )
    if wanted(f"dask-{huge}"):
        parts = ensure_parquet(env.python, csv, 20)
        dask = mmcli_peer(env, [fit[0], str(parts / "*.parquet"), *fit[1:], "--dask", "local:2"])
        memory = dataclasses.replace(
            mmcli_peer(env, [fit[0], str(ensure_parquet(env.python, csv, 1)), *fit[1:]]), key="memory",
            label="mmcli in memory (Parquet)",
        )  # fmt: skip
        cases.append(
            Case(
                f"dask-{huge}",
                n,
                csv,
                [dask, memory],
                [Goal("memory", None, "logLik to 1e-10", loglik_rel=1e-10)],
                rss_max_mib=1024.0,
            )
        )
    return cases


def glmm_cases(env: Env, out: Path, sz: dict, digits: int | None, wanted: Callable[[str], bool]) -> list[Case]:
    """A binary response with a random intercept: mmcli fit --family binomial (whole process) against the glmer()
    call alone; 100,000 rows: at least 10x faster, the same deviance to 1e-3 (log-likelihood to 5e-4). The
    1,000,000-row file is for memory (peak under 3x the CSV), without glmer."""
    cases = []
    for n, k in sz["glmm"]:
        name = f"glmm-{short(n)}"
        if not wanted(name):
            continue
        csv = ensure_data(
            env.python, out, f"binary_{short(n)}_g{k}", "binary", {"n": n, "groups": k, "seed": 7 + n}, digits
        )
        formula = "y ~ x1 + x2 + (1 | g)"
        peers = [mmcli_peer(env, ["fit", str(csv), formula, "--family", "binomial", "--format", "json"])]
        if n <= 100_000:
            peers.append(glmer_peer(env, csv, formula))
        goals = [Goal("lme4", 0.1 if n == 100_000 else None, "≤ 0.1 (10× faster)" if n == 100_000 else "—")]
        cases.append(
            Case(
                name,
                n,
                csv,
                peers,
                goals if n <= 100_000 else [],
                memory_goal=3.0 if n >= 1_000_000 else None,
                higher_ok=True,
            )
        )
    return cases


# ---------------------------------------------------------------------------------------------------------
# Report


def fmt_s(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def fmt_ll(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def baseline_cell(res: Result) -> str:
    if res.timed_out:
        return f"> {res.peer.timeout:.0f}"
    if res.error:
        return res.error if len(res.error) < 40 else "failed"
    return fmt_s(res.median())


def compare_row(case: Case, goal: Goal, results: dict[str, Result]) -> tuple[list[str], float | None]:
    """One line of the table: mmcli against one baseline. Returns the cells and |Δ loglik| if known."""
    m, b = results["mmcli"], results[goal.baseline]
    tm, tb = m.median(), b.median()
    ratio_txt, ratio, upper_bound = "—", None, False
    if m.ok and b.ok and tm is not None and tb:
        paired = paired_ratio(m, b)
        ratio = paired if paired is not None else tm / tb
        ratio_txt = f"{ratio:.3f}"
    elif m.ok and tm is not None and b.timed_out:
        ratio, upper_bound = tm / b.peer.timeout, True
        ratio_txt = f"< {ratio:.3f}"
    dll = None
    if m.loglik is not None and b.loglik is not None:
        dll = m.loglik - b.loglik
    if goal.max_ratio is None and goal.loglik_rel is not None:  # a goal on the agreement alone
        ok = m.ok and b.ok and dll is not None and abs(dll) <= loglik_tol(goal, m)
        verdict = "pass" if ok else "FAIL (loglik)" if dll is not None else "n/a (no result)"
    elif goal.max_ratio is None:
        verdict = "—"
    elif not m.ok:
        verdict = "FAIL (mmcli: no result)"
    elif ratio is None:
        verdict = "n/a (baseline missing)"
    elif ratio > goal.max_ratio:
        verdict = f"FAIL (×{ratio / goal.max_ratio:.2f} over)"
    elif dll is not None and (-dll if case.higher_ok else abs(dll)) > loglik_tol(goal, m):
        verdict = "FAIL (loglik)"
    else:
        verdict = "pass" + (" (bound)" if upper_bound else "")
    rss = m.median_rss_mib()
    csv_mib = case.csv.stat().st_size / MIB
    csv_txt = f"{csv_mib:.1f}" if csv_mib >= 1 else f"{csv_mib:.3f}"
    cells = [
        case.name,
        f"{case.rows:,}",
        fmt_s(tm) if m.ok else ("timed out" if m.timed_out else "no result"),
        b.peer.label,
        baseline_cell(b),
        ratio_txt,
        goal.text,
        verdict,
        fmt_ll(m.loglik),
        fmt_ll(b.loglik),
        "—" if dll is None else f"{dll:+.2e}",
        "—" if rss is None else f"{rss:.0f}",
        csv_txt,
        "—" if rss is None else f"{rss / csv_mib:,.2f}" if rss / csv_mib < 100 else f"{rss / csv_mib:,.0f}",
        load_cell(m, b),
    ]
    return cells, (None if dll is None else max(-dll, 0.0) if case.higher_ok else abs(dll))


def loglik_tol(goal: Goal, m: Result) -> float:
    if goal.loglik_rel is not None and m.loglik is not None:
        return goal.loglik_rel * abs(m.loglik)
    return LOGLIK_TOL


def load_cell(*results: Result) -> str:
    """The median and the largest 1-minute load average seen before the case's timed runs."""
    loads = [x for r in results for x in r.loads]
    return "—" if not loads else f"{statistics.median(loads):.2f} (max {max(loads):.2f})"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def report(cases: list[Case], all_results: dict[str, dict[str, Result]]) -> str:
    header = [
        "case", "rows", "mmcli s", "baseline", "baseline s", "ratio", "goal", "result",
        "loglik mmcli", "loglik baseline", "Δ loglik", "mmcli RSS MiB", "CSV MiB", "RSS/CSV", "load",
    ]  # fmt: skip
    rows, mem_rows, agree, notes, details = [], [], [], [], []
    for case in cases:
        results = all_results[case.name]
        diffs = []
        for goal in case.goals:
            cells, d = compare_row(case, goal, results)
            rows.append(cells)
            if d is not None:
                diffs.append((d, results[goal.baseline].peer.label))
        if diffs:
            d, who = max(diffs)
            tol = min(loglik_tol(goal, results["mmcli"]) for goal in case.goals)
            verdict = "ok" if d <= tol else "DISAGREE"
            what = "max shortfall of mmcli's loglik (higher is better)" if case.higher_ok else "max |Δ loglik|"
            agree.append(f"- {case.name}: {what} = {d:.2e} ({who}) → {verdict} (tolerance {tol:.3g})")
        else:
            agree.append(f"- {case.name}: nothing to compare (no log-likelihood from mmcli or a baseline)")
        m = results["mmcli"]
        size = case.csv.stat().st_size
        if case.memory_goal is not None:
            rss = m.median_rss_mib()
            ratio = None if rss is None else rss * MIB / size
            verdict = "—" if ratio is None else ("pass" if ratio <= case.memory_goal else "FAIL")
            if ratio is not None and ratio > case.memory_goal:
                verdict += f" (×{ratio / case.memory_goal:.2f} over)"
            peers_rss = ", ".join(
                f"{r.peer.label} {r.median_rss_mib():.0f}"
                for r in results.values()
                if r.rss_kib and r.peer.key != "mmcli"
            )
            mem_rows.append(
                [
                    case.name,
                    f"{case.rows:,}",
                    f"{size / MIB:.1f} ({size:,} B)",
                    "—" if rss is None else f"{rss:.0f}",
                    "—" if ratio is None else f"{ratio:.2f}",
                    f"≤ {case.memory_goal:g}",
                    verdict,
                    peers_rss or "—",
                ]
            )
        rss = m.median_rss_mib()
        if case.rss_max_mib is not None and rss is not None:
            top = max(k / 1024 for k in m.rss_kib)
            verdict = "pass" if top < case.rss_max_mib else "FAIL"
            mem_rows.append(
                [case.name, f"{case.rows:,}", f"{size / MIB:.1f}", f"{rss:.0f} (max {top:.0f})", "—",
                 f"largest process < {case.rss_max_mib:g} MiB", verdict, "—"]
            )  # fmt: skip
        if case.rss_below is not None and rss is not None:
            other = results[case.rss_below].median_rss_mib()
            verdict = "—" if other is None else ("pass" if rss < other else "FAIL")
            mem_rows.append(
                [case.name, f"{case.rows:,}", f"{size / MIB:.1f}", f"{rss:.0f}", "—",
                 f"below {results[case.rss_below].peer.label}", verdict, "—" if other is None else f"{other:.0f}"]
            )  # fmt: skip
        for res in results.values():
            for note in res.notes:
                notes.append(f"- {case.name}: {note}")
            if res.error:
                notes.append(f"- {case.name}: {res.peer.label}: {res.error}")
            if res.wall:
                extra = ""
                if res.seconds != res.wall:
                    extra += " (lmer call; whole process " + ", ".join(fmt_s(w) for w in res.wall) + ")"
                if res.fit_seconds:
                    extra += " (of which the fit alone " + ", ".join(fmt_s(f) for f in res.fit_seconds) + ")"
                details.append(
                    f"- {case.name} / {res.peer.label}: "
                    + ", ".join(fmt_s(s) for s in res.seconds)
                    + f" s{extra}; peak RSS "
                    + ", ".join(f"{k / 1024:.0f}" for k in res.rss_kib)
                    + " MiB; load before each run "
                    + ", ".join(f"{x:.2f}" for x in res.loads)
                )
    out = [
        "ratio = the median over rounds of mmcli seconds / baseline seconds in the same round (paired runs); a goal "
        f"passes when the ratio is within it and the log-likelihoods agree to {LOGLIK_TOL:g} (or the relative "
        "tolerance the case states). load = the 1-minute load average before each timed run of the pair.",
        "",
        markdown_table(header, rows),
    ]
    if mem_rows:
        out += [
            "",
            "Peak resident memory of the whole mmcli process against the CSV's size on disk (medians):",
            "",
            markdown_table(
                ["case", "rows", "CSV MiB", "mmcli RSS MiB", "RSS/CSV", "goal", "result", "others' RSS MiB"],
                mem_rows,
            ),
        ]
    out += ["", "Log-likelihood agreement:", *agree]
    if notes:
        out += ["", "Notes:", *notes]
    out += ["", "Every run (seconds; peak RSS):", *details]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------
# Machine description


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / MIB:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def versions(python: str) -> str:
    code = (
        "import importlib.metadata as m, platform\n"
        "out = ['python ' + platform.python_version()]\n"
        "for p in ('numpy', 'pandas', 'scipy', 'statsmodels', 'mmcli'):\n"
        "    try: out.append(p + ' ' + m.version(p))\n"
        "    except m.PackageNotFoundError: out.append(p + ' (not installed)')\n"
        "try:\n"
        "    import numpy\n"
        "    b = numpy.__config__.CONFIG['Build Dependencies']['blas']\n"
        "    out.append(f\"numpy's BLAS {b['name']} {b.get('version', '')}\".strip())\n"
        "except Exception:\n"
        "    pass\n"
        "try:\n"
        "    import threadpoolctl\n"
        "    for d in threadpoolctl.threadpool_info():\n"
        "        out.append(f\"{d['internal_api']} threads {d['num_threads']}\")\n"
        "except Exception:\n"
        "    pass\n"
        "print(', '.join(out))"
    )
    proc = run_process([python, "-c", code], 60)
    return proc.stdout.strip() or f"(could not ask {python})"


def r_versions(r_missing: str | None) -> str:
    if r_missing:
        return r_missing
    code = (
        'cat(R.version.string, ", lme4 ", as.character(packageVersion("lme4")), '
        '", Matrix ", as.character(packageVersion("Matrix")), ", R\'s BLAS ", sessionInfo()$BLAS, sep = "")'
    )
    return run_process(["Rscript", "-e", code], 60).stdout.strip()


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "mmcli"], capture_output=True, text=True
        ).stdout.strip()
        return head + (" (mmcli/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_header(env: Env, args: argparse.Namespace) -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    blas = ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    threads = ", ".join(
        f"{k}={os.environ[k]}"
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        if k in os.environ
    )
    lines = [
        f"- date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {cpus} CPUs (nproc), {cpu_model()}, {mem_total()} RAM, {platform.system()} {platform.release()}",
        f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- {versions(env.python)}",
        f"- {r_versions(env.r_missing)}",
        f"- mmcli: {env.mmcli} at commit {git_commit()}",
        f"- BLAS environment: {blas}" + (f"; {threads}" if threads else ""),
        f"- settings: {'quick sizes' if args.quick else 'full sizes'}, median of {args.repeats} runs, "
        f"statsmodels timeout {env.timeout:.0f} s, "
        + ("a busy-loop process beside every run, " if args.busy else "")
        + "CSV floats "
        + ("at full precision" if args.digits is None else f"with {args.digits} significant digits"),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def busy_loop(on: bool, python: str) -> Iterator[None]:
    """A process spinning on one core beside the runs, when ``on``: what a shared machine looks like."""
    if not on:
        yield
        return
    proc = subprocess.Popen([python, "-c", "while True: pass"], start_new_session=True)
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (checks the harness; goals are for full sizes)")
    ap.add_argument("--only", action="append", metavar="NAME", help="run cases whose name contains NAME (repeatable)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per peer (default 3; medians are reported)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out", help="data directory (default bench/out)")
    ap.add_argument(
        "--timeout",
        type=float,
        default=120,
        help="seconds before statsmodels is killed (default 120); mmcli and R get five times as long",
    )
    ap.add_argument(
        "--digits",
        type=int,
        default=None,
        help="significant digits of simulated floats (default: full precision, the ~63 MB file of the goals)",
    )
    ap.add_argument("--mmcli", default=None, help="mmcli executable (default .venv/bin/mmcli)")
    ap.add_argument("--save", type=Path, default=None, help="also write the report (markdown) to this file")
    ap.add_argument("--list", action="store_true", help="list the case names and exit")
    ap.add_argument(
        "--busy",
        action="store_true",
        help="run a busy-loop process beside every run (contention, as on a machine doing something else)",
    )
    ap.add_argument("--generate-one", nargs=3, metavar=("KIND", "PARAMS", "CSV"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.generate_one:
        kind, params, csv = args.generate_one
        generate(kind, json.loads(params), Path(csv))
        return 0
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if args.list:
        print("\n".join(case_names(args.quick)))
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    venv = REPO / ".venv" / "bin"
    python = str(venv / "python") if (venv / "python").exists() else sys.executable
    mmcli = args.mmcli or (str(venv / "mmcli") if (venv / "mmcli").exists() else "mmcli")
    args.out.mkdir(parents=True, exist_ok=True)

    log("checking peers ...")
    has_sm = run_process([python, "-c", "import statsmodels"], 120).returncode == 0
    env = Env(
        python=python,
        mmcli=mmcli,
        mmcli_missing=mmcli_status(mmcli),
        r_missing=r_status(),
        statsmodels_missing=None if has_sm else "statsmodels not installed (pip install -e '.[bench]')",
        timeout=args.timeout,
    )
    for what in (env.mmcli_missing, env.r_missing, env.statsmodels_missing):
        if what:
            log(f"  {what}")

    names = case_names(args.quick)
    wanted = (lambda n: any(o in n for o in args.only)) if args.only else (lambda n: True)
    if not any(wanted(n) for n in names):
        ap.error(f"--only matches no case; cases are: {', '.join(names)}")
    header = machine_header(env, args)
    log("preparing data ...")
    cases = build_cases(env, args.out, args.quick, args.digits, wanted)

    all_results = {}
    for case in cases:
        log(f"{case.name} ({case.rows:,} rows, {case.csv.stat().st_size / 1e6:.1f} MB):")
        subprocess.run(["cat", str(case.csv)], stdout=subprocess.DEVNULL, check=False)  # page cache, for everyone
        with busy_loop(args.busy, python):
            all_results[case.name] = measure(case.peers, args.repeats, log)

    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = (
        f"{header}\n- load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
        f"- this runner's own peak RSS: {floor:.0f} MiB (a child's measured peak cannot be lower)\n\n"
    )
    text += report(cases, all_results)
    print(text)
    if args.save:
        cmd = " ".join(["bench/run.py", *(argv if argv is not None else sys.argv[1:])])
        args.save.write_text(
            f"# mmcli benchmark results\n\nProduced by `.venv/bin/python {cmd}` (bench/run.py says how each "
            "goal is measured).\n\n"
            f"{text}\n"
        )
        log(f"saved to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
