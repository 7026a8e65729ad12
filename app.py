"""LoRA Studio: Space / local entry point. `python app.py` serves the app (127.0.0.1:7860 locally)."""
from trainer_backend.ui.app import build_app, launch

# Data preparation's worker processes (multiprocessing's forkserver) re-import this file as `__mp_main__`: they
# need no app, and must not build one.
demo = build_app() if __name__ != "__mp_main__" else None

if __name__ == "__main__":
    launch(demo)
