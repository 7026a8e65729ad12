"""LoRA Studio backend: job spec, data pipeline, training, jobs, Hub and inference."""
__version__ = "0.1.0"
