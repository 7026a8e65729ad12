"""LoRA Studio: Space / local entry point. `python app.py` serves the app (127.0.0.1:7860 locally)."""
from trainer_backend.settings import SettingsError
from trainer_backend.ui.app import build_app, launch

# Data preparation's worker processes (multiprocessing's forkserver) re-import this file as `__mp_main__`: they
# need no app, and must not build one.
try:
    demo = build_app() if __name__ != "__mp_main__" else None
except SettingsError as exc:  # a bad LORA_STUDIO_* value: the message names it and what it takes, no traceback
    raise SystemExit(f"error: {exc}") from None

if __name__ == "__main__":
    launch(demo)
