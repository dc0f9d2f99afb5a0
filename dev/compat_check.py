"""``make compat``: prove the supported range on real installs, the way a user adds the provider.

For each target a fresh virtualenv first gets *only* Airflow (the oldest supported release, or the
newest our constraints hold), then ``pip install`` of the built wheel, as a team adds a provider to
the Airflow it runs. Then, in that virtualenv:

- pip left Airflow as it was (same versions of apache-airflow, -core and -task-sdk);
- ``airflow providers list`` lists the provider;
- ``dev/compat_probe.py``: optional libraries stay unloaded, the example DAGs parse, and (Airflow
  < 3.3) a retry after a crash re-attaches to its EE task (one export request, one EE task);
- ``dev/compat_dag.py`` runs with ``dag.test()``: tiles exported to Drive and harvested, against
  the emulator (run here, in this repository's environment), through the real connection, with a
  person's credentials (Application Default Credentials), as Drive exports need.

The oldest target installs from ``requirements/constraints-oldest.txt``: Airflow 3.1.0 and every
runtime dependency of ``pyproject.toml`` at its lower bound, with everything else resolved around
them (``--lock-oldest`` writes it with uv's lowest-direct resolution from ``requirements/oldest.in``
and pyproject's bounds), so those bounds are tested and pip has nothing to search. Airflow's own
published constraint files cannot be fetched here (package registries only); ``oldest.in`` pins
what Airflow 3.1.0's would have where today's releases break it. The newest target installs from
``requirements/constraints.txt``. Prints one JSON line per target; exits non-zero on a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gee_emulator import EmulatorConfig, EmulatorServer

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "compat"
AIRFLOW_DISTS = ("apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk")
REQUIREMENTS = ROOT / "requirements"


def lower_bounds() -> dict[str, str]:
    """``name -> version`` of every ``name>=version`` runtime dependency in pyproject.toml."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {m[1]: m[2] for d in deps if (m := re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][^,;\s]*)", d.strip()))}


def pinned(name: str, constraints: Path) -> str:
    """The version of ``name`` in a constraints file."""
    for line in constraints.read_text().splitlines():
        if line.lower().startswith(f"{name.lower()}=="):
            return line.split("==", 1)[1].strip()
    raise SystemExit(f"{name} is not pinned in {constraints}")


def lock_oldest() -> Path:
    """Write requirements/constraints-oldest.txt (needs uv: ``pip install uv``)."""
    spec = WORK / "oldest.in"
    spec.parent.mkdir(parents=True, exist_ok=True)
    bounds = [f"{name}>={version}" for name, version in lower_bounds().items() if name != "apache-airflow"]
    spec.write_text((REQUIREMENTS / "oldest.in").read_text() + "\n".join(bounds) + "\n")
    out = REQUIREMENTS / "constraints-oldest.txt"
    run([sys.executable, "-m", "uv", "pip", "compile", str(spec), "--python-version", "3.11",
         "--resolution", "lowest-direct", "--no-header", "--no-annotate", "-o", str(out)])  # fmt: skip
    return out


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        command = " ".join(map(str, cmd))
        raise RuntimeError(f"{command} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def build_wheel() -> Path:
    """The provider's wheel, built from a copy of the tree: setuptools writes ``build/`` and
    ``src/*.egg-info`` where it builds, and the tests running beside it import the provider from
    ``src/`` (its editable install) meanwhile."""
    out = ROOT / "build" / "dist"
    shutil.rmtree(out, ignore_errors=True)
    skip = shutil.ignore_patterns(".venv", ".git", "build", "dist", "demo-output", "*.egg-info", "__pycache__",
                                  ".pytest_cache", ".lock-venv")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gee-wheel-") as tmp:
        tree = Path(tmp) / "tree"
        shutil.copytree(ROOT, tree, ignore=skip)
        run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(tree)])
    (wheel,) = out.glob("airflow_provider_gee-*.whl")
    return wheel


def wheel_problems(wheel: Path) -> list[str]:
    """What a production wheel must not hold (the emulator, the harness, tests) or must hold."""
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    problems = [n for n in names if not n.startswith(("airflow_provider_gee/", "airflow_provider_gee-"))]
    problems += [n for n in names if "emulator" in n.split("/")[-1] or "airflow_stack" in n or "demo" in n]
    page = ("tile_map.html", "tile_map.js", "tile_map.css")
    for needed in ("airflow_provider_gee/py.typed", *(f"airflow_provider_gee/plugins/{n}" for n in page)):
        if needed not in names:
            problems.append(f"{needed} missing")
    return problems


def installed_versions(python: Path) -> dict[str, str]:
    out = run([str(python), "-m", "pip", "list", "--format", "json"]).stdout
    return {p["name"].lower(): p["version"] for p in json.loads(out)}


def install_target(target: str, wheel: Path, reuse: bool = False) -> tuple[Path, dict[str, str]]:
    """A fresh virtualenv with only Airflow, then the wheel added with pip; returns the virtualenv
    and the Airflow distributions installed before the wheel."""
    venv = WORK / target
    python = venv / "bin" / "python"
    if reuse and python.exists():  # development only: keep the installed Airflow, replace the wheel
        run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)])
        return venv, installed_versions(python)
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    constraints = REQUIREMENTS / ("constraints-oldest.txt" if target == "oldest" else "constraints.txt")
    airflow = pinned("apache-airflow", constraints)
    # 1. the Airflow a team already runs: only Airflow (and what it needs)
    run([*pip, f"apache-airflow=={airflow}", "-c", str(constraints)], timeout=1800)
    before = {d: v for d, v in installed_versions(python).items() if d in AIRFLOW_DISTS}
    # 2. the provider added to it (no extras: a worker that exports and harvests)
    run([*pip, str(wheel), "-c", str(constraints)], timeout=900)
    return venv, before


def check_installed(target: str, venv: Path, before: dict[str, str], emulator: EmulatorServer) -> dict[str, object]:
    """Run the checks of the module docstring in an installed target."""
    python = venv / "bin" / "python"
    versions = installed_versions(python)
    before = {d: v for d, v in before.items() if d in AIRFLOW_DISTS}
    after = {d: versions.get(d) for d in AIRFLOW_DISTS}
    home = Path(tempfile.mkdtemp(prefix=f"gee-compat-{target}-"))
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dev" / "compat_dag.py", dags / "compat_dag.py")
    # Drive exports need a person's credentials (service accounts have no Drive storage): the
    # connection has no key and the hooks take Application Default Credentials from this file, a
    # login with an OAuth client of the person's own (gcloud's own client is not granted Drive)
    adc = home / "application_default_credentials.json"
    adc.write_text(json.dumps(emulator.user_credentials(client="own")))
    adc.chmod(0o600)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(home)),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(emulator.connection(user=True)),
        "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
        # the project of a person's login, as `gcloud config set project` gives it (Google provider
        # releases before 22 refuse Application Default Credentials without one)
        "GOOGLE_CLOUD_PROJECT": emulator.config.project,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    try:
        run([str(venv / "bin" / "airflow"), "db", "migrate"], env=env, timeout=600)
        providers = run([str(venv / "bin" / "airflow"), "providers", "list"], env=env, timeout=300).stdout
        exports_before = emulator.stats()["export_requests"]
        probe = json.loads(
            run([str(python), str(ROOT / "dev" / "compat_probe.py"), str(ROOT / "example_dags")], env=env, cwd=home,
                timeout=600).stdout.strip().splitlines()[-1]
        )  # fmt: skip
        probe_exports = emulator.stats()["export_requests"] - exports_before
        # Airflow 3.1's dag.test() needs the DAG in the database already (3.3's parses the bundle itself)
        run([str(venv / "bin" / "airflow"), "dags", "reserialize"], env=env, timeout=600)
        out = home / "harvest"
        dag_run = json.loads(
            run([str(python), str(dags / "compat_dag.py"), str(out)], env=env, cwd=home, timeout=900)
            .stdout.strip().splitlines()[-1]
        )  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)
    report = {
        "target": target,
        "airflow": after["apache-airflow"],
        "airflow_unchanged": before == after,
        "provider_listed": "airflow-provider-gee" in providers,
        "lower_bounds_installed": target != "oldest"
        or all(versions.get(n.lower()) == v for n, v in lower_bounds().items() if n != "apache-airflow"),
        "optional_modules_loaded": probe["optional_modules_loaded"],
        "example_dag_errors": probe["example_dag_errors"],
        "dag_test": dag_run,
    }
    if "retry" in probe:
        report["retry"] = {**probe["retry"], "export_requests": probe_exports}
    return report


def failures(report: dict[str, object]) -> list[str]:
    bad = [k for k in ("airflow_unchanged", "provider_listed", "lower_bounds_installed") if not report[k]]
    bad += ["optional_modules_loaded"] if report["optional_modules_loaded"] else []
    bad += ["example_dag_errors"] if report["example_dag_errors"] else []
    dag_run = report["dag_test"]
    if dag_run["state"] != "success" or len(dag_run["files"]) < 2:  # type: ignore[index]
        bad.append("dag_test")
    retry = report.get("retry")
    if retry and not (
        retry["submitted"] == retry["retry_result"] and retry["operations"] == 1 and retry["export_requests"] == 1
    ):
        bad.append("retry")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="oldest, newest (default: both)")
    parser.add_argument("--lock-oldest", action="store_true", help="write requirements/constraints-oldest.txt")
    parser.add_argument(
        "--reuse", action="store_true", help="development: reuse existing virtualenvs, only replace the wheel"
    )
    args = parser.parse_args(argv)
    if set(args.targets) - {"oldest", "newest"}:
        parser.error(f"unknown target(s) {sorted(set(args.targets) - {'oldest', 'newest'})}: use oldest, newest")
    WORK.mkdir(parents=True, exist_ok=True)
    if args.lock_oldest:
        print(lock_oldest())
        return 0
    wheel = build_wheel()
    problems = wheel_problems(wheel)
    print(json.dumps({"wheel": wheel.name, "wheel_problems": problems}), flush=True)
    failed = bool(problems)
    targets = args.targets or ["oldest", "newest"]
    # the installs are mostly downloads and unpacking: both at once roughly halve the wall time
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        installed = dict(zip(targets, pool.map(lambda t: install_target(t, wheel, args.reuse), targets), strict=True))
    with EmulatorServer(EmulatorConfig(project="gee-compat", ee_concurrency=4, task_seconds=0.3)) as emulator:
        for target in targets:
            report = check_installed(target, *installed[target], emulator)
            report["failures"] = failures(report)
            failed = failed or bool(report["failures"])
            print(json.dumps(report), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
