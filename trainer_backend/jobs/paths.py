"""Where the job store lives, and the settings every jobs process agrees on."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..job_files import DATA_DIR_ENV, LOCAL_DATA_DIR, store_dir  # noqa: F401 - re-exported
from ..settings import settings

SPACES_DATA_ROOT = Path("/data")  # Hugging Face Spaces mounts persistent storage here
JOBS_SUBDIR = "jobs"


def default_data_dir(explicit: Optional[str | Path] = None) -> Path:
    """--data-dir, else $LORA_STUDIO_DATA_DIR, else /data/lora-studio when persistent storage is mounted
    (jobs then survive a Space restart), else ./lora-studio-data."""
    return store_dir(explicit, SPACES_DATA_ROOT)


def default_max_concurrent() -> int:
    """Training jobs run at once per data dir (default 1: one job owns the machine's GPUs)."""
    return settings().max_concurrent_jobs
