"""Exporting a finished job (GGUF files, merged weights, an Ollama Modelfile) for the Jobs tab and the named API,
without Gradio: check a client's options, start the export in its own process (export/state.py), read its record,
follow it until it ends, and hand out its files.

The export process writes <job>/export/export.json after every step, so everything here reads that file: a closed
browser tab, a dropped client or a second app worker sees the same export. Access checks happen in ui/api.py and
the Jobs tab (the caller must be allowed to train, like Push); the Hub token the export acts with is the caller's
own (access.hub_token: on a Space never the owner's for anyone else).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import ValidationError

from ..access import Identity, hub_token
from ..errors import SpecError
from ..export import state
from ..export.report import CHECK_COLUMNS, check_rows, thresholds_line
from ..job_files import EXPORT_DIR
from ..jobs.exports import default_export_root, link_or_copy, zip_stored
from ..jobs.store import JobStateError
from ..spec_export import EXPORT_FORMATS, ExportSpec
from .finished_jobs import finished_job, start_lock
from .streams import follow_changes
from .form_fields import _message
from .service import StudioService

EXPORT_STREAM_MAX_SECONDS = 3600.0  # an /export_job stream ends after this; calling it again re-attaches
OPTION_FIELDS = ("formats", "merged_dtype", "check_prompts", "check_tokens", "system_prompt")
NO_EXPORT = "not exported yet"


def field_label(name: str) -> str:
    """What the Export box calls an ExportSpec field (its `label` in the spec)."""
    extra = ExportSpec.model_fields[name].json_schema_extra
    label = extra.get("label") if isinstance(extra, dict) else None
    return str(label or name.replace("_", " ").capitalize())


def option_errors(raw: dict[str, Any]) -> dict[str, str]:
    """ExportSpec field name -> what is wrong with the client's value, in words (empty: the options are valid).
    An export of nothing is refused here too: the spec allows it (no `export:` block), a press of Export does not."""
    problems: dict[str, list[str]] = {}
    try:
        ExportSpec.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "formats"
            if err["type"] == "literal_error" and name == "formats":
                text = f"{err['input']!r} is not a format; pick from {', '.join(EXPORT_FORMATS)}"
            elif err["type"] == "literal_error":
                text = f"must be {err['ctx']['expected']} (got {err['input']!r})"
            else:
                text = f"{_message(err)} (got {err['input']!r})"
            problems.setdefault(name, []).append(text)
    if not problems.get("formats") and not raw.get("formats"):
        problems["formats"] = [f"pick at least one format to make ({', '.join(EXPORT_FORMATS)})"]
    return {name: "; ".join(dict.fromkeys(texts)) for name, texts in problems.items()}


def options_raw(formats: Any, merged_dtype: Any = "auto", check_prompts: Any = 8, check_tokens: Any = 32,
                system_prompt: Any = "") -> dict[str, Any]:
    """A client's values as the ExportSpec's raw dict: a comma-separated string of formats is a list, a number
    box's 8.0 is 8, an empty system prompt is none (the job's own applies)."""
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]

    def whole(value: Any) -> Any:
        return int(value) if isinstance(value, float) and value.is_integer() else value

    return {"formats": list(formats or []), "merged_dtype": merged_dtype or "auto",
            "check_prompts": whole(check_prompts), "check_tokens": whole(check_tokens),
            "system_prompt": (system_prompt.strip() or None) if isinstance(system_prompt, str) else system_prompt}


def parse_options(raw: dict[str, Any]) -> ExportSpec:
    """The ExportSpec for these values, or a SpecError naming each wrong field by its label."""
    errors = option_errors(raw)
    if errors:
        raise SpecError("cannot export: " + "; ".join(f"{field_label(k)} ({k}): {v}" for k, v in errors.items()))
    return ExportSpec.model_validate(raw)


def _options_of(spec: Any) -> dict[str, Any]:
    """What an export makes (for 'is the running export the one asked for'); where a push puts files is not."""
    try:
        data = ExportSpec.model_validate(spec or {}).model_dump()
    except ValidationError:
        return {}
    data.pop("gguf_repo", None)
    return data


class ExportService:
    """The export actions of one app (`studio`: its job store, path scrubbing and download rule). `export_root`:
    where download copies of exported files go (never the job folder itself)."""

    def __init__(self, studio: StudioService, export_root: Optional[Path] = None):
        self.studio = studio
        self.export_root = export_root or default_export_root()

    def _finished_job(self, job_id: str) -> Any:
        return finished_job(self.studio, job_id, "export", "exports need a finished job with a trained adapter")

    def start(self, job_id: str, spec: ExportSpec) -> dict[str, Any]:
        """Start exporting a finished job in its own process, acting on the Hub with the caller's own token
        (False: none at all). Refused while an export of the same job runs."""
        self._begin(job_id, spec, attach=False)
        return self.status(job_id)

    def _begin(self, job_id: str, spec: ExportSpec, attach: bool) -> bool:
        """Start the export, or (attach) follow the running one when it makes the same files. True: attached."""
        from ..export.run import preflight  # here: the export package imports the data layer

        job = self._finished_job(job_id)
        preflight(job.job_dir, spec)  # what cannot work is refused before a process starts (ExportError)
        with start_lock(str(job.job_dir)):
            running = state.read_record(job.job_dir)
            if running and running.state == "running":
                if attach and _options_of(running.spec) == _options_of(spec.model_dump()):
                    return True
                asked = ", ".join(running.spec.get("formats") or []) or "?"
                raise JobStateError(f"an export of job {job.id} is already running ({asked}; "
                                    f"{running.fraction:.0%}, {running.message}); wait for it to end "
                                    "(/export_status shows it) before exporting again"
                                    + (", or ask /export_job for the same options to follow it" if attach else ""))
            state.start_export(job.job_dir, spec.model_dump_json(), hub_token())
        return False

    def export(self, job_id: str, spec: ExportSpec, interval: float = 1.0,
               timeout: Optional[float] = None) -> Iterator[dict[str, Any]]:
        """/export_job: start the export (or follow the running one when it was asked with the same options) and
        yield its status at every change until it ends. The first item says `attached` true or false."""
        attached = self._begin(job_id, spec, attach=True)
        first = True
        for status in self.follow(job_id, interval, timeout):
            if first:
                status = {**status, "attached": attached}
                first = False
            yield status

    def follow(self, job_id: str, interval: float = 1.0, timeout: Optional[float] = None) -> Iterator[dict[str, Any]]:
        """The export's status at every change until it is no longer running (or `timeout`)."""
        yield from follow_changes(lambda: self.status(job_id), lambda s: (
            s["state"], s["fraction"], s["message"], len(s["files"]), len(s["table"]), s["finished"]), interval,
            EXPORT_STREAM_MAX_SECONDS if timeout is None else timeout)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's export as JSON: state (none | running | succeeded | failed | interrupted), fraction, message,
        the file names, the check table (`columns`, `table`: pass / warn / fail per file and what differs), notes,
        error, the options it ran with; server paths replaced by names."""
        job = self.studio.jobs.get(job_id)
        record = state.read_record(job.job_dir)
        if record is None:
            return {"job_id": job.id, "state": "none", "fraction": 0.0, "message": NO_EXPORT, "files": [],
                    "columns": CHECK_COLUMNS, "table": [], "notes": [], "error": None, "details": [],
                    "modelfile": None, "options": None, "runtime": None, "started": None, "finished": None,
                    "thresholds": thresholds_line()}
        names = [f.name for f in record.files] + list((record.modelfile or {}).get("files") or [])
        out = {"job_id": job.id, "state": record.state, "fraction": round(record.fraction, 4),
               "message": record.message, "files": names, "columns": CHECK_COLUMNS, "table": check_rows(record),
               "notes": list(record.notes), "error": record.error,
               "details": [{"name": f.name, "format": f.format, "bytes": f.bytes, "seconds": f.seconds,
                            "check": f.check} for f in record.files],
               "modelfile": record.modelfile, "options": record.spec, "runtime": record.runtime,
               "started": record.started, "finished": record.finished, "thresholds": thresholds_line()}
        return self.studio.calm(out)

    def downloads(self, job_id: str, ident: Identity) -> list[str]:
        """Download copies of an ended export's files (a merged folder as a .zip) for a caller who may download the
        job's artifacts (StudioService.may_download); none while it runs."""
        job = self.studio.jobs.get(job_id)
        if not self.studio.may_download(ident, job.id):
            return []
        record = state.read_record(job.job_dir)
        if record is None or record.state == "running":
            return []
        source = state.export_dir(job.job_dir)
        names = [f.name for f in record.files] + list((record.modelfile or {}).get("files") or [])
        # One folder per export (its finish time): a newer export never rewrites a file someone is downloading.
        stamp = f"{int((record.finished or record.started) * 1000)}"
        dest = self.export_root / job.id / EXPORT_DIR / stamp
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.parent.iterdir():
            if old.name != stamp:
                shutil.rmtree(old, ignore_errors=True)
        out = []
        for name in names:
            src = source / name
            if Path(name).name != name or not (src.is_file() or src.is_dir()):
                continue  # only files the export made in its own folder
            out.append(str(zip_stored(src, dest / f"{name}.zip") if src.is_dir() else link_or_copy(src, dest / name)))
        return out

