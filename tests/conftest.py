"""Shared fixtures: paths to the real data in ../shared/data (CI has it beside the checkout)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MINEWATCH_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# ONNX exports of the networks (models.runtime) go to a folder of this test session, not the
# user's cache; CLI subprocesses inherit it, so each network is exported once per session.
os.environ.setdefault("MINEWATCH_CACHE_DIR", tempfile.mkdtemp(prefix="minewatch-test-cache-"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (boundaries, mining polygons, recorded payloads)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not found (set MINEWATCH_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
