"""The Gradio app: Train, Jobs and Chat/Evaluate tabs plus a named API for gradio_client."""
from .app import build_app

__all__ = ["build_app"]
