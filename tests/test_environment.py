"""pyproject.toml and environment.yml must describe the same environment."""
import re
import tomllib

import yaml

from .conftest import REPO


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    conda = [d for d in env if isinstance(d, str) and not d.startswith(("python", "pip"))]
    pip = next(d["pip"] for d in env if isinstance(d, dict))
    env_names = {_name(d) for d in conda + pip if not d.startswith("-e")}
    assert env_names == {_name(d) for d in project}


def test_pins_agree():
    project = {_name(d): d.replace(" ", "") for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in env if isinstance(d, dict))
    for d in pip:
        if not d.startswith("-e"):
            assert d.replace(" ", "") == project[_name(d)], d
