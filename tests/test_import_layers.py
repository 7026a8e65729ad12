"""Imports run down the layers: no module of trainer_backend may import, directly or through others, a module
that imports it back. Lazy (function-level) imports count too: they are still a dependency, only a later one."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trainer_backend"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # `from .pkg import name`: the name may be a submodule (then that is the dependency)
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in files else origin for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                # `import a.b.c` depends on the deepest module of ours it names
                while target and target not in files:
                    target = target.rpartition(".")[0]
                # a module reaching its own package's __init__ is Python's package machinery, not a layer edge
                if target and target != mod and not mod.startswith(target + "."):
                    graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    graph = import_graph()
    assert "trainer_backend.spec" in graph["trainer_backend.autotrain"] or \
        "trainer_backend.errors" in graph["trainer_backend.autotrain"]
    assert "trainer_backend.hub.merge" in graph["trainer_backend.hub.push"]  # a function-level import


def test_no_import_circles_inside_trainer_backend() -> None:
    found = cycles(import_graph())
    assert not found, "modules that import each other (make the arrow run one way):\n" + \
        "\n".join(" <-> ".join(c) for c in found)


def test_a_circle_is_detected() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_job_file_names_are_spelled_only_in_job_files() -> None:
    """A job folder's layout has one home (trainer_backend/job_files.py): everyone else imports the names."""
    import re

    from trainer_backend import job_files as jf

    files = [jf.SPEC_FILE, jf.REPORT_FILE, jf.EVENTS_FILE, jf.LOG_FILE, jf.DEBUG_LOG_FILE, jf.EVAL_FILE, jf.EVAL_LOG, jf.META_FILE,
             jf.EXPORT_FILE, jf.EXPORT_LOG, jf.MODELFILE]
    folders = [jf.ADAPTER_DIR, jf.CHECKPOINTS_DIR, jf.EXPORT_DIR, jf.MERGED_DIR]
    spelled = re.compile("|".join([rf"[\"']{re.escape(n)}[\"']" for n in files] +  # the file name as a literal
                                  [rf"/\s*[\"']{re.escape(n)}[\"']" for n in folders] +  # a path join
                                  [rf"[\"']{re.escape(jf.CHECKPOINT_PREFIX)}\{{"]))  # f"checkpoint-{step}"
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "job_files.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if spelled.search(line.split("#", 1)[0]):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, "spell the job file names through trainer_backend.job_files:\n" + "\n".join(offenders)


# The layers, bottom first (README "Layout" says the same). A module may import its own layer and the ones below.
LAYERS = [
    {"job_files", "job_status", "errors", "ml_stack", "tiny_model", "trainer_registry", "spec_values",  # names, values
     "settings",  # every LORA_STUDIO_* variable a person sets (settings.py)
     "access", "background", "redaction",  # who the caller is, whose Hub token a call uses; secrets out of what is shown
     "library_hooks",  # every reach into a library's private internals (tests/test_library_hooks.py)
     "run_events"},  # what a run records in events.jsonl: one typed record per kind, for writers and readers
    {"spec", "spec_base", "spec_env", "spec_training", "spec_compute", "spec_rl", "spec_export", "spec_evaluation", "spec_sweep", "autotrain", "generation", "rewards",
     "tool_calls", "tool_output"},  # the job spec (+ AutoTrain's dialect), sampling settings, the reward functions GRPO's spec names,
    # tool schemas and calls in their one canonical form (read by data, evaluation, chat and the tool_call reward)
    {"model_info", "data"},                                              # spec in, data and facts out
    {"training"},                                                        # model loading, trainers, plan, run
    {"public_demo", "uploads", "model_card", "hub", "remote", "model_cache", "inference", "evaluation",
     "export", "jobs"},
    {"sweep"},                                                           # searches: trials are jobs
    {"cli", "cache_cli", "export_cli", "evaluation_cli", "sweep_cli", "__main__", "ui"},                              # entry points
]


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else "__init__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer: add '{top}' to LAYERS (and README's layout line)")


def test_imports_run_down_the_layers() -> None:
    upward = [f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)})"
              for src, targets in import_graph().items() if src != "trainer_backend"
              for dst in targets if dst != "trainer_backend" and layer_of(dst) > layer_of(src)]
    assert not upward, "imports must run down the layers:\n" + "\n".join(sorted(upward))
