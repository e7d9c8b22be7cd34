"""The repository's install surface: pyproject.toml and environment.yml declare the same
dependencies, and the README's test command is the one .ci/run executes."""

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from the dev extra `tomli`
    import tomli as tomllib

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _normalize(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_environment_yml_mirrors_pyproject():
    project = _pyproject()["project"]
    declared = {_normalize(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_normalize(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    mirrored = {_normalize(r) for r in pip_section if not r.startswith("-e")}
    assert mirrored == declared, (
        f"only in pyproject: {sorted(declared - mirrored)}; only in environment.yml: {sorted(mirrored - declared)}"
    )
    extras = ",".join(sorted(project["optional-dependencies"]))
    assert f"-e .[{extras}]" in pip_section, "environment.yml must install the package with its extras"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    pattern = re.search(r"grep -m1 -E '([^']+)' README.md", ci).group(1)
    matches = [line for line in readme.splitlines() if re.match(pattern, line)]
    assert matches and matches[0] == 'pip install -e ".[dev]" && pytest --nbval'
    assert 'pip install --quiet "torch==2.13.0"' in ci


def test_readme_opens_with_the_app_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert block == ["pip install -e . && python app/main.py", 'pip install -e ".[dev]" && pytest --nbval']
    assert readme.index("```bash") < readme.index("\n## ")  # before any section
    assert (ROOT / "app" / "main.py").exists()


def test_readme_offers_the_cpu_build_first_and_ci_runs_the_notebooks_on_one_thread_too():
    readme = (ROOT / "README.md").read_text()
    before_the_commands = readme.split("```bash\n", 1)[0]
    assert "`pip install torch --index-url https://download.pytorch.org/whl/cpu`" in before_the_commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert "OMP_NUM_THREADS=1 pytest --nbval" in ci.split('eval "$test_command"', 1)[1], "after the README's run"


def test_ci_checks_the_formatting_and_the_linter_configured_in_pyproject():
    ruff = _pyproject()["tool"]["ruff"]
    assert ruff["line-length"] == 120
    ci = (ROOT / ".ci" / "run").read_text()
    assert "ruff format --check" in ci and "ruff check" in ci
    dev = {_normalize(r).split("=")[0].rstrip("<>!~") for r in _pyproject()["project"]["optional-dependencies"]["dev"]}
    assert "ruff" in dev, "CI installs ruff with the dev extra"
