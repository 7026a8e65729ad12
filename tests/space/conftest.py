"""One app started as a public Space for every module of this package, stopped after the last of them."""
from __future__ import annotations

from pathlib import Path

import pytest

from .attacks import started_space


@pytest.fixture(scope="package")
def space(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, real_data: Path):
    yield from started_space(tmp_path_factory.mktemp("space"), tiny_model_dir, real_data)
