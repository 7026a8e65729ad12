"""LoRA Studio benchmarks (see docs/benchmarks.md). Entry point: `python bench/run.py [--quick] [--only NAME]`."""
