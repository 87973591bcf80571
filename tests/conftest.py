"""Shared pytest fixtures: where the golden fixtures live, and the tiny checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["tests.ls_fixture"] if (REPO_ROOT / "tests" / "ls_fixture.py").is_file() else []


def find_shared_dir() -> Path:
    """shared/ sits beside the repository (CI copies it there); NEXTCHAT_SHARED overrides."""
    override = os.environ.get("NEXTCHAT_SHARED")
    candidates = [Path(override)] if override else []
    candidates += [REPO_ROOT.parent / "shared", REPO_ROOT / "shared"]
    for candidate in candidates:
        if (candidate / "fixtures" / "nextchat-tiny").is_dir():
            return candidate
    raise RuntimeError(f"shared/ with fixtures/nextchat-tiny not found; looked in {candidates}")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return find_shared_dir()


@pytest.fixture(scope="session")
def tiny_dir(shared_dir) -> Path:
    return shared_dir / "fixtures" / "nextchat-tiny"


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dir) -> Path:
    return tiny_dir / "weights" / "nextchat"


@pytest.fixture(scope="session")
def tiny_vision_tower(tiny_dir) -> Path:
    return tiny_dir / "weights" / "clip"


@pytest.fixture(scope="session")
def random_tiny_checkpoint(tmp_path_factory) -> Path:
    """A random tiny checkpoint (release format) whose answers contain boxes; tower in ./vision_tower."""
    from model.random_checkpoint import write_random_checkpoint

    return write_random_checkpoint("tiny", tmp_path_factory.mktemp("random_tiny"), seed=0)
