"""Helpers shared by the deploy tests: where things are, what the code accepts."""

from __future__ import annotations

import shlex
from pathlib import Path

from pydantic import AliasChoices

from models.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def settings_aliases() -> dict[str, str]:
    """Every setting's environment name (upper case), mapped to its field name."""
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            env = alias.choices[0]
        elif isinstance(alias, str):
            env = alias
        else:
            raise AssertionError(f"Settings.{field_name} has no environment name")
        assert isinstance(env, str)
        names[env.upper()] = field_name
    return names


def procfile() -> dict[str, list[str]]:
    """The Procfile's processes: name -> argv (with `${VAR:-default}` left as written)."""
    processes: dict[str, list[str]] = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = shlex.split(command)
    return processes
