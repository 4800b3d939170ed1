"""Repository hygiene: no tracked file names this machine's folders, and the benchmark writers
record paths relative to the repository and libraries by name.

The forbidden folders are derived from the running interpreter (its installation, standard
library and site-packages), the checkout (this one and every worktree of the same repository),
the home folder and the data folder, so the test holds on any machine.
"""

import os
import re
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# System-wide roots that a Debian or Homebrew interpreter reports as its prefix: forbidding them
# would forbid every /usr/share path and shebang. Their Python folders (stdlib, site-packages)
# are forbidden instead.
_SHARED_ROOTS = {"", "/usr", "/usr/local", "/opt", "/opt/homebrew"}


def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def _worktrees():
    """Every checkout of this repository on the machine (``git worktree list``), this one first."""
    trees = [str(ROOT)]
    try:
        out = _git("worktree", "list", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return trees
    return trees + [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def machine_prefixes():
    """Absolute folders of this machine that no tracked file may contain, longest first."""
    paths = set(_worktrees())
    paths |= {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    paths |= {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= set(getattr(site, "getsitepackages", list)()) | {site.getusersitepackages()}
    paths.add(str(Path.home()))
    data = os.environ.get("TINYGRAD_FREE_DATA")
    if data:
        paths.add(os.path.abspath(data))
    out = set()
    for p in filter(None, paths):
        for form in (os.path.abspath(p), os.path.realpath(p)):
            form = form.rstrip("/")
            if form and form not in _SHARED_ROOTS and os.path.isabs(form):
                out.add(form)
    return sorted(out, key=len, reverse=True)


def _pattern(prefixes):
    # a prefix as a whole path component: /opt/py matches /opt/py/x and "/opt/py", not /opt/py2
    return re.compile("|".join(rf"(?<![\w.-]){re.escape(p)}(?![\w.-])" for p in prefixes))


def tracked_text_files():
    try:
        names = _git("ls-files", "-z").split("\0")
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout ({e}): nothing is tracked")
    for name in filter(None, names):
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary (PNG): no text to hold a path
            continue
        yield name, data.decode("utf-8", errors="replace")


def test_no_tracked_file_names_this_machines_checkout_or_python_installation():
    prefixes = machine_prefixes()
    # the check looks for something: this checkout and, unless it is a system-wide root, the interpreter's prefix
    assert str(ROOT) in prefixes
    assert sys.prefix.rstrip("/") in prefixes or sys.prefix.rstrip("/") in _SHARED_ROOTS
    pattern = _pattern(prefixes)
    found = []
    for name, text in tracked_text_files():
        for lineno, line in enumerate(text.splitlines(), 1):
            m = pattern.search(line)
            if m:
                found.append(f"{name}:{lineno}: {m.group(0)!r} in {line.strip()[:120]!r}")
    assert not found, (
        "tracked files name folders of this machine; record paths relative to the repository "
        "(benchmarks/common.py: repo_relative) and libraries by name, or drop them:\n"
        + "\n".join(found[:30])
        + (f"\n... and {len(found) - 30} more" if len(found) > 30 else "")
    )


def test_the_path_check_catches_a_machine_path_and_spares_relative_and_system_ones():
    pattern = _pattern(machine_prefixes())
    site_packages = sysconfig.get_paths()["purelib"]
    assert pattern.search(f'"filepath": "{site_packages}/numpy.libs/libopenblas.so"')
    assert pattern.search(f"cd {ROOT} && pytest")
    assert pattern.search(f"see {ROOT}")
    assert not pattern.search(f"{ROOT}-other/x")  # a sibling folder whose name only starts the same
    assert not pattern.search('"data_dir": "../shared/data", "results": "benchmarks/results/x.jsonl"')
    assert not pattern.search("#!/usr/bin/env python3")
    assert not pattern.search('DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"')


# --- the benchmark writers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def common():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import common as C
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return C


def test_benchmark_paths_are_recorded_relative_to_the_repository(common):
    assert common.repo_relative(ROOT / "benchmarks" / "results" / "x.jsonl") == "benchmarks/results/x.jsonl"
    assert common.repo_relative(ROOT.parent / "shared" / "data") == "../shared/data"
    assert common.repo_relative("/nowhere-else/data") == "<outside the repository>/data"
    assert common.repo_relative(None) is None
    assert common.command_line(["--out", str(ROOT / "benchmarks" / "results"), "--quick"]).endswith(
        " --out benchmarks/results --quick"
    )


def test_benchmark_blas_info_names_libraries_not_their_folders(common):
    pytest.importorskip("threadpoolctl")
    import numpy as np

    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS is loaded
    info = common.blas_info()
    assert info["pools"], info
    for pool in info["pools"]:
        assert "filepath" not in pool and pool["library"] and os.sep not in pool["library"], pool
    assert info["numpy_openblas"]["user_api"] == "blas"


def test_a_missing_raw_dump_is_an_error_naming_the_command_that_measures_it(common, tmp_path):
    with pytest.raises(
        SystemExit,
        match=r"no .*train\.json to redraw from: raw results are not kept in git; "
        r"`python3 benchmarks/bench_train.py` measures them again",
    ):
        common.replot(tmp_path, "train", lambda r: "", command="python3 benchmarks/bench_train.py")


def test_replot_redraws_the_page_from_the_json(common, tmp_path):
    (tmp_path / "t.json").write_text('{"n": 3}')
    assert common.replot(tmp_path, "t", lambda r: f"# {r['n']} runs\n") == 0
    assert (tmp_path / "t.md").read_text() == "# 3 runs\n"


def test_the_tracked_sweep_benchmark_page_is_what_its_json_gives(tmp_path):
    """bench_sweep.md and its figure come from bench_sweep.json alone (the per-trial JSONL is not in git)."""
    pytest.importorskip("matplotlib")
    import shutil

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_sweep
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    results = ROOT / "benchmarks" / "results"
    shutil.copy(results / "bench_sweep.json", tmp_path)
    assert bench_sweep.main(["--replot", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "bench_sweep.md").read_text() == (results / "bench_sweep.md").read_text()
    assert (tmp_path / "random_vs_tpe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="no .*bench_sweep.json to redraw from; `python3 benchmarks/bench_sweep.py`"):
        bench_sweep.main(["--replot", "--out", str(tmp_path / "empty")])


def test_every_link_and_image_of_a_tracked_markdown_file_is_tracked():
    """What the README and the result pages show is in git (the raw dumps beside them are not)."""
    tracked = set(filter(None, _git("ls-files", "-z").split("\0")))
    missing = []
    for name in sorted(t for t in tracked if t.endswith(".md")):
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor
            folder = os.path.dirname(name)
            if os.path.basename(folder) == "sections":  # report fragments, pasted into ../report.md
                folder = os.path.dirname(folder)
            path = os.path.normpath(os.path.join(folder, target.split("#")[0]))
            if folder == "docs/results" and target.endswith(".png"):
                # the docs hook serves these folders' figures beside the results pages (docs/hooks.py)
                figures = [os.path.join(f, target) for f in ("benchmarks/results", "report")]
                path = next((f for f in figures if f in tracked), path)
            if path not in tracked and not any(t.startswith(path + "/") for t in tracked):
                missing.append(f"{name}: ({target})")
    assert not missing, "Markdown links to files git does not track:\n" + "\n".join(missing)
