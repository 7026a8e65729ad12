"""llama.cpp's own converters and quantizer, at the version of the llama.cpp runtime installed beside them.

The runtime is llama-cpp-python (requirements.txt), which builds llama.cpp from source on install. Its installed
package holds the library but not llama.cpp's Python tools; its source distribution holds both
(vendor/llama.cpp/: convert_hf_to_gguf.py, convert_lora_to_gguf.py, conversion/, gguf-py/). The converter folder
is those files, taken from the source distribution of exactly the installed version: `make install` and the
Dockerfile fetch it (`python -m trainer_backend.export.llama_cpp --install`), and an export fetches it on first
use where they did not. PyPI's own `gguf` release is not used: its 0.19.0 differs from the gguf-py of the
llama.cpp 0.3.36 builds (constants, tensor names), and a converter must write what its runtime reads.

The quantizer is llama.cpp's C function (llama_model_quantize), called through the installed runtime.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Optional

from ..settings import settings

RUNTIME = "llama-cpp-python"
CONVERTER_FILES = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "LICENSE")
CONVERTER_FOLDERS = ("conversion", "gguf-py")
# llama.cpp's file types (llama.h, enum llama_ftype), named as the export and GGUF file names write them.
QUANT_FTYPES = {"q8_0": 7, "q4_K_M": 15, "q5_K_M": 17, "q6_K": 18}
CONVERTER_TYPES = ("f16", "bf16", "f32")  # written by the converter itself; the others are quantized from f16


class LlamaCppError(RuntimeError):
    """llama.cpp's tools are missing or one of them failed; the message says which and what to do."""


def runtime_version() -> Optional[str]:
    try:
        return metadata.version(RUNTIME)
    except metadata.PackageNotFoundError:
        return None


def _require_runtime() -> str:
    version = runtime_version()
    if version is None:
        raise LlamaCppError(f"GGUF export needs {RUNTIME} (llama.cpp): pip install -r requirements.txt")
    return version


def installed_converter_dir(version: str) -> Path:
    """Where `--install` puts the converter: inside the Python environment, beside the runtime it matches."""
    return Path(sys.prefix) / "share" / "lora-studio" / f"llama.cpp-{version}"


def _complete(folder: Path) -> bool:
    return all((folder / name).exists() for name in ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py",
                                                      "conversion", "gguf-py/gguf"))


def converter_dir(fetch: bool = True) -> Path:
    """The converter folder for the installed runtime: LORA_STUDIO_LLAMA_CPP_DIR, else the environment's copy,
    else (fetch=True) downloaded now from the package index pip uses."""
    explicit = settings().llama_cpp_dir
    if explicit:
        folder = Path(explicit).expanduser()
        if not _complete(folder):
            raise LlamaCppError(f"LORA_STUDIO_LLAMA_CPP_DIR={explicit} is not a llama.cpp source folder (it needs "
                                "convert_hf_to_gguf.py, convert_lora_to_gguf.py, conversion/ and gguf-py/)")
        return folder
    version = _require_runtime()
    folder = installed_converter_dir(version)
    if _complete(folder):
        return folder
    if not fetch:
        raise LlamaCppError(f"llama.cpp's converter for {RUNTIME} {version} is not installed: run "
                            "python -m trainer_backend.export.llama_cpp --install")
    return install_converter(version, folder)


def install_converter(version: str, dest: Path) -> Path:
    """Download the runtime's source distribution with pip and keep its converter files in `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", RUNTIME,
               f"{RUNTIME}=={version}", "--dest", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = sorted(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise LlamaCppError(f"could not download {RUNTIME} {version}'s source for llama.cpp's converter: "
                                f"{(done.stderr or done.stdout).strip()[-400:]}")
        staged = Path(tmp) / "converter"
        _extract_converter(archives[0], staged)
        if not _complete(staged):
            raise LlamaCppError(f"{archives[0].name} holds no llama.cpp converter under vendor/llama.cpp/")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staged, dest)
    return dest


def _extract_converter(archive: Path, out: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) < 4 or parts[1:3] != ("vendor", "llama.cpp") or not (member.isfile() or member.isdir()):
                continue
            inner = Path(*parts[3:])
            top = inner.parts[0]
            if top in CONVERTER_FILES and len(inner.parts) == 1 or top in CONVERTER_FOLDERS and "tests" not in inner.parts:
                member.name = str(inner)
                tar.extract(member, out, filter="data")


def run_tool(script: str, args: list[str], log_file: Path, timeout: Optional[float] = None) -> None:
    """Run one of llama.cpp's Python tools (convert_runner.py) with its output appended to `log_file`; raise
    LlamaCppError with the last lines of that output when it fails."""
    folder = converter_dir()
    cmd = [sys.executable, "-m", "trainer_backend.export.convert_runner", str(folder), script, *args]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_LOCAL_GGUF": "1"}
    with open(log_file, "ab") as log:
        log.write(f"$ {script} {' '.join(args)}\n".encode())
        log.flush()
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    if done.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-8:]
        raise LlamaCppError(f"llama.cpp's {script} failed (exit {done.returncode}): " + " | ".join(tail))


def quantize(source: Path, dest: Path, quant: str, threads: Optional[int] = None) -> None:
    """llama.cpp's quantizer (llama_model_quantize) from an f16/bf16/f32 GGUF to `quant` (a QUANT_FTYPES name)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_FTYPES[quant]
    params.nthread = threads or llama_threads()
    tmp = dest.with_name(f".{dest.name}.partial")
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    if code != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise LlamaCppError(f"llama.cpp could not quantize {source.name} to {quant} (code {code})")
    os.replace(tmp, dest)


def llama_threads() -> int:
    """llama.cpp's compute threads: OMP_NUM_THREADS when a process sets it (the tests: 1; llama.cpp's threads spin
    while they wait, burning CPU others need), else every core."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return max(1, os.cpu_count() or 1)


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trainer_backend.export.llama_cpp",
                                     description="Fetch llama.cpp's converter for the installed llama-cpp-python.")
    parser.add_argument("--install", action="store_true", help="download it now if it is not there yet")
    args = parser.parse_args(argv)
    try:
        folder = converter_dir(fetch=args.install)
    except LlamaCppError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
