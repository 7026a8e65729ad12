"""LoRA Studio: Space / local entry point. `python app.py` serves the app (127.0.0.1:7860 locally)."""
from trainer_backend.ui.app import build_app, launch

demo = build_app()

if __name__ == "__main__":
    launch(demo)
