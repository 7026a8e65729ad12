"""Export a finished job: one load of base + adapter, then merged weights, GGUF files, a LoRA GGUF, a Modelfile,
and the round-trip check of each file, recorded in <job>/export/export.json as it goes.

    python -m trainer_backend.export.run JOB_DIR [--spec JSON]   (what the background process runs; see state.py)

Order: load base + adapter (PEFT) → the reference answers on held-out prompts → merge (checked against the
adapter's logits) → convert to f16/bf16 → quantize → LoRA GGUF (+ the base's f16 GGUF it applies to) → Modelfile →
check every file. Nothing a person made is touched: everything is written under the job's export folder, and a
failed step leaves the files made before it, with the error in export.json.
"""
from __future__ import annotations

import gc
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..data.chat_render import without_generation_markers
from ..job_files import ADAPTER_DIR, EXPORT_DIR, EXPORT_LOG, MERGED_DIR
from ..spec_export import GGUF_FORMATS, ExportSpec
from . import gguf
from .llama_cpp import CONVERTER_TYPES, runtime_version
from .modelfile_check import write_modelfiles
from .reference import Reference, build_reference, held_out_conversations
from .roundtrip import GgufRunner, check_file
from ..access import HF_TOKEN_ENV
from .state import ExportRecord, FileEntry, write_record

STAGING = ".staging"


class ExportError(ValueError):
    """The job cannot be exported as asked; the message says why and what would work."""

BASE_GGUF = "base-f16.gguf"


class Exporter:
    def __init__(self, job_dir: Path, spec: ExportSpec, token: Optional[str] = None,
                 on_progress: Optional[Callable[[ExportRecord], None]] = None):
        self.job_dir, self.spec, self.token = job_dir, spec, token
        self.out = job_dir / EXPORT_DIR
        self.staging = self.out / STAGING
        self.log = self.out / EXPORT_LOG
        self.record = ExportRecord(state="running", spec=spec.model_dump(), runtime=runtime_version())
        self.on_progress = on_progress
        job = _job_spec(job_dir)
        self.stem = job.project_name if job else job_dir.name
        self.trained_system = job.data.system_prompt if job else None

    def step(self, fraction: float, message: str) -> None:
        self.record.fraction, self.record.message = fraction, message
        write_record(self.out, self.record)
        if self.on_progress:
            self.on_progress(self.record)

    def run(self) -> ExportRecord:
        self.out.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(exist_ok=True)
        try:
            self._run()
            self.record.state = "succeeded"
            self.step(1.0, _summary(self.record))
        except Exception as err:  # noqa: BLE001 - any failure is recorded; files made before it stay
            self.record.state, self.record.error = "failed", f"{type(err).__name__}: {err}" if not str(err) else str(err)
            self.step(self.record.fraction, f"export failed: {self.record.error}")
        finally:
            self.record.finished = time.time()
            write_record(self.out, self.record)
            shutil.rmtree(self.staging, ignore_errors=True)
        return self.record

    def _run(self) -> None:
        from ..hub.merge import merge_loaded

        wanted = set(self.spec.formats)
        ggufs: list[str] = [f for f in GGUF_FORMATS if f in wanted]
        self.step(0.02, "loading the base model and the adapter")
        loaded = self._load()
        tokenizer = loaded.tokenizer
        if tokenizer.chat_template:  # as it renders for inference, for runtimes that do not know TRL's markers
            tokenizer.chat_template = without_generation_markers(tokenizer.chat_template)
        self.step(0.08, "answering held-out prompts with the adapter (the reference every file is checked against)")
        conversations = held_out_conversations(self.job_dir, self.spec.check_prompts, self.trained_system)
        reference = build_reference(loaded.model, tokenizer, loaded.meta, conversations, self.spec.check_tokens)
        self.record.reference = {"prompts": len(reference.prompts), "tokens": reference.max_tokens,
                                 "stopped": sum(p.stop is not None for p in reference.prompts)}
        merged_dir: Optional[Path] = None
        if "merged" in wanted or ggufs:
            self.step(0.2, "merging the adapter into the base (checked against base + adapter)")
            merged_dir = (self.out / MERGED_DIR) if "merged" in wanted else (self.staging / MERGED_DIR)
            shutil.rmtree(merged_dir, ignore_errors=True)
            dtype = None if self.spec.merged_dtype == "auto" else self.spec.merged_dtype
            started = time.time()
            if loaded.meta.lora:
                report = merge_loaded(loaded, merged_dir, dtype)
                self.record.notes.append(f"merged in {report.dtype}: max |logit diff| {report.max_abs_diff:.2g} "
                                         f"(allowed {report.tolerance:.2g})")
            else:  # a full fine-tune: the trained model itself, in the dtype asked for
                import torch

                model = loaded.model.to(getattr(torch, dtype)) if dtype else loaded.model
                model.save_pretrained(str(merged_dir))
                tokenizer.save_pretrained(str(merged_dir))
            if "merged" in wanted:
                self._add(merged_dir, "merged", started)
        meta = loaded.meta
        del loaded
        gc.collect()
        made = self._ggufs(ggufs, merged_dir, tokenizer, reference) if ggufs else []
        if "lora_gguf" in wanted:
            made.append(self._lora(meta, tokenizer, reference))
        if "modelfile" in wanted:
            self.step(0.85, "writing the Ollama Modelfile")
            self.record.modelfile = write_modelfiles(self.out, made, tokenizer, meta, reference,
                                                     self.spec.system_prompt or self.trained_system)
        for k, (entry, model_path, lora_path) in enumerate(made):
            self.step(0.87 + 0.12 * k / max(len(made), 1), f"checking {entry.name} against the adapter")
            runner = GgufRunner(model_path, lora_path)
            try:
                entry.check = check_file(runner, reference, tokenizer, entry.name, entry.format).to_dict()
            finally:
                runner.close()
            write_record(self.out, self.record)

    def _load(self) -> Any:
        """Base + adapter (PEFT) for a LoRA job; the trained model itself for a full fine-tune."""
        from ..hub.merge import LoadedAdapter, load_for_merge
        from ..training.model_loading import load_model

        adapter_dir = self.job_dir / ADAPTER_DIR
        meta = preflight(self.job_dir, self.spec)
        if meta.lora:
            return load_for_merge(adapter_dir, token=self.token)
        from transformers import AutoTokenizer

        load = meta.load_settings().model_copy(update={"base_model": str(adapter_dir)}).unquantized("float32")
        return LoadedAdapter(load_model(load, "causal").eval(), AutoTokenizer.from_pretrained(str(adapter_dir)),
                             meta, str(adapter_dir), "float32", "float32")

    def _ggufs(self, formats: list[str], merged_dir: Optional[Path], tokenizer: Any,
               reference: Reference) -> list[tuple[FileEntry, Path, Optional[Path]]]:
        assert merged_dir is not None
        made: list[tuple[FileEntry, Path, Optional[Path]]] = []
        source_type = next((f for f in formats if f in CONVERTER_TYPES), "f16")
        source = self._path(source_type, keep=source_type in formats)
        started = time.time()
        self.step(0.35, f"converting to GGUF {source_type} with llama.cpp's convert_hf_to_gguf.py")
        gguf.convert_model(merged_dir, source, source_type, self.log)
        self.record.notes += gguf.fix_stops(source, tokenizer, reference.stop_ids, reference.end_of_turn, self.log)
        if source_type in formats:
            made.append((self._add(source, source_type, started), source, None))
        for fmt in formats:
            if fmt == source_type:
                continue
            started = time.time()
            dest = self._path(fmt, keep=True)
            if fmt in CONVERTER_TYPES:
                self.step(0.45, f"converting to GGUF {fmt}")
                gguf.convert_model(merged_dir, dest, fmt, self.log)
                self.record.notes += gguf.fix_stops(dest, tokenizer, reference.stop_ids, reference.end_of_turn,
                                                    self.log)
            else:
                self.step(0.5, f"quantizing to {fmt} with llama.cpp's quantizer")
                gguf.quantize_model(source, dest, fmt)
            made.append((self._add(dest, fmt, started), dest, None))
        return made

    def _lora(self, meta: Any, tokenizer: Any, reference: Reference) -> tuple[FileEntry, Path, Optional[Path]]:
        load = meta.load_settings()
        self.step(0.65, "converting the base model to GGUF f16 (the LoRA GGUF applies to it)")
        base_dir = gguf.local_model_dir(load.base_model, load.revision, self.token)
        base = self.out / BASE_GGUF
        started = time.time()
        gguf.convert_model(base_dir, base, "f16", self.log)
        self.record.notes += gguf.fix_stops(base, tokenizer, reference.stop_ids, reference.end_of_turn, self.log)
        self._add(base, "base_f16", started)
        self.step(0.75, "converting the adapter to a LoRA GGUF with llama.cpp's convert_lora_to_gguf.py")
        started = time.time()
        dest = self.out / gguf.gguf_name(self.stem, "lora-f16")
        gguf.convert_lora(self.job_dir / ADAPTER_DIR, base_dir, dest, self.log)
        return self._add(dest, "lora_gguf", started), base, dest

    def _path(self, fmt: str, keep: bool) -> Path:
        return (self.out if keep else self.staging) / gguf.gguf_name(self.stem, fmt)

    def _add(self, path: Path, fmt: str, started: float) -> FileEntry:
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        entry = FileEntry(name=path.name, format=fmt, bytes=size, seconds=round(time.time() - started, 2))
        self.record.files = [f for f in self.record.files if f.name != entry.name] + [entry]
        write_record(self.out, self.record)
        return entry


def preflight(job_dir: Path, spec: ExportSpec) -> Any:
    """What can be told before anything loads (the app checks it before it starts the export process): raises
    ExportError saying why the job cannot be exported as asked; returns the adapter's metadata."""
    from ..trainer_registry import trainer_info
    from ..training.adapter_meta import read_adapter_meta

    meta = read_adapter_meta(Path(job_dir) / ADAPTER_DIR)
    if meta is None:
        raise ExportError("the job holds no trained model: only a finished job can be exported")
    if not spec.formats:
        raise ExportError("choose at least one format to export (merged, f16, bf16, q8_0, q4_K_M, lora_gguf, "
                          "modelfile)")
    if trainer_info(meta.trainer).head != "causal":
        raise ExportError(f"a {meta.trainer} job trains a model that scores text, not one that writes it: GGUF "
                          "and Ollama are for models that generate")
    if not meta.lora and "lora_gguf" in spec.formats:
        raise ExportError("this job trained the full model, not a LoRA adapter: there is no LoRA GGUF to make "
                          "(export f16, q8_0 or q4_K_M instead)")
    if "modelfile" in spec.formats and not set(spec.formats) & {*GGUF_FORMATS, "lora_gguf"}:
        raise ExportError("a Modelfile points at a GGUF file: add f16, q8_0, q4_K_M or lora_gguf to the formats")
    return meta


def _job_spec(job_dir: Path) -> Any:
    from ..hub.push import job_spec

    return job_spec(job_dir)


def _summary(record: ExportRecord) -> str:
    checked = [f for f in record.files if f.check]
    verdicts = {v: sum(1 for f in checked if f.check and f.check["verdict"] == v) for v in ("pass", "warn", "fail")}
    made = ", ".join(f.name for f in record.files)
    return (f"exported {made}; checks: {verdicts['pass']} pass, {verdicts['warn']} warn, {verdicts['fail']} fail"
            if checked else f"exported {made}")


def export_job(job_dir: str | Path, spec: ExportSpec, token: Optional[str] = None,
               on_progress: Optional[Callable[[ExportRecord], None]] = None) -> ExportRecord:
    """Run the export in this process (the background process and the tests call this)."""
    return Exporter(Path(job_dir), spec, token, on_progress).run()


def main(argv: Optional[list[str]] = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m trainer_backend.export.run")
    parser.add_argument("job_dir")
    parser.add_argument("--spec", default="{}", help="the export section as JSON")
    args = parser.parse_args(argv)
    token = os.environ.get(HF_TOKEN_ENV) or None  # the caller's, set by state.start_export; never in a file
    record = export_job(args.job_dir, ExportSpec.model_validate(json.loads(args.spec)), token)
    return 0 if record.state == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
