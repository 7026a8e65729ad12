"""4. App: cold start (process start -> HTTP 200 on `/`) of `python app.py`, and p50/p95 latency of the
`job_status` endpoint under 20 concurrent gradio_client pollers while a training job runs.

The poller part needs an app that exposes `/job_status`. Whether it does is read from gradio_client's view of
the API; when it does not, the line says "not available yet" and nothing fails. When it does, a real training
job (the small model, enough steps to outlast the polling) is submitted through `trainer_backend.jobs.JobManager`
on the same data dir as the app, and then, while it trains:
  single     1 gradio_client poller, back to back (no queueing: the per-call latency)
  rest_paced 20 light pollers, 1 call/s each, GET /api/v1/jobs/<id> (the app's plain route): the judged figure,
             with training tokens/s under them vs. the same length of training alone
  raw_paced  20 pollers, 1 call/s each, through Gradio's documented HTTP API with urllib (POST + SSE GET)
  paced      20 gradio_client pollers, 1 call/s each (a status view refreshing)
  tight      20 gradio_client pollers back to back (saturation: calls/s the box sustains)
For each, CPU time per call of the app process and of the pollers (this process) is recorded: on a small box
the pollers share the CPU with the server and the training job. A `floor` reference (bench/_floor_app.py, no
training) serves a do-nothing endpoint both through gr.api and as a plain FastAPI GET route.
The job is stopped afterwards and every process this benchmark started is ended by pid.
"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .common import (CHAT_GSM8K, REPO, Result, child_env, median, model_dir, proc_cpu_seconds, python,
                     read_events, verdict)

START_TARGET_S = 8.0
P95_TARGET_MS = 250.0          # light HTTP pollers (issue 13): the judged latency
TOKENS_RATIO_TARGET = 0.9      # training tokens/s with the pollers / without
WINDOW_PAIRS = 3               # alternating quiet / polled windows for that ratio


@dataclass
class Config:
    repeats: int = 3
    pollers: int = 20
    poll_seconds: float = 20.0
    idle_seconds: float = 10.0   # the app's own CPU use with no request, before the job starts
    interval: float = 1.0        # paced pollers: one call per second each (a status view refreshing)
    timeout: float = 90.0
    model: str = "small"
    floor: bool = True           # also measure the machine's floor (trivial endpoint, gradio vs plain HTTP)


QUICK = Config(repeats=1, pollers=4, poll_seconds=3.0, idle_seconds=1.0, timeout=90.0, model="tiny", floor=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """`python app.py` on a free port, in its own process group (so it and anything it starts can be ended)."""

    def __init__(self, work: Path, data_dir: Path, timeout: float):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = work / f"app-{self.port}.log"
        env = child_env(None, GRADIO_SERVER_PORT=str(self.port), GRADIO_SERVER_NAME="127.0.0.1",
                        LORA_STUDIO_DATA_DIR=str(data_dir))
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([python(), "app.py"], cwd=REPO, env=env, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.start_s = self._wait_200(timeout)

    def _wait_200(self, timeout: float) -> float:
        while time.perf_counter() - self.t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode} before serving; see {self.log}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.t0
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"app.py did not answer HTTP 200 within {timeout:.0f} s; see {self.log}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, 9)
                except ProcessLookupError:
                    pass
                self.proc.wait()


def endpoints(url: str) -> dict[str, Any]:
    from gradio_client import Client

    api = Client(url, verbose=False).view_api(return_format="dict", print_info=False) or {}
    return api.get("named_endpoints", {}) or {}


def poll(calls: list[Callable[[], Any]], seconds: float, interval: float = 0.0,
         server_pid: Optional[int] = None) -> dict[str, Any]:
    """One thread per callable, each calling it for `seconds`: back to back (interval 0: saturation), or one call
    every `interval` seconds (a UI refreshing a status). Latency percentiles over all calls, and the CPU time per
    call spent by the server process and by the pollers (this process)."""
    server_cpu0 = proc_cpu_seconds(server_pid) if server_pid else None
    own_cpu0 = sum(os.times()[:2])
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    t_start = time.perf_counter()
    stop_at = t_start + seconds

    def worker(call: Callable[[], Any], offset: float) -> None:
        time.sleep(offset)  # spread paced pollers over the interval instead of firing in lockstep
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            try:
                call()
                with lock:
                    latencies.append(time.perf_counter() - t)
            except Exception as exc:  # noqa: BLE001
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
            if interval:
                time.sleep(max(0.0, interval - (time.perf_counter() - t)))

    threads = [threading.Thread(target=worker, args=(c, interval * i / len(calls)), daemon=True)
               for i, c in enumerate(calls)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    lat = sorted(latencies)
    n = max(len(lat), 1)
    server_cpu = proc_cpu_seconds(server_pid) if server_pid else None

    def pct(q: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    return {"pollers": len(calls), "interval_s": interval, "seconds": seconds, "calls": len(lat),
            "errors": len(errors), "latencies_ms": [round(1000 * x, 2) for x in lat],
            "calls_per_s": len(lat) / seconds, "first_error": errors[0] if errors else None,
            "p50_ms": pct(0.50), "p95_ms": pct(0.95),
            "server_cpu_ms_per_call": 1000 * (server_cpu - server_cpu0) / n if server_cpu0 is not None
            and server_cpu is not None else None,
            "client_cpu_ms_per_call": 1000 * (sum(os.times()[:2]) - own_cpu0) / n}


def _idle_cpu_percent(pid: int, seconds: float) -> Optional[float]:
    """CPU the app takes while nobody uses it (a Space's server shares the box with training all day)."""
    before = proc_cpu_seconds(pid)
    time.sleep(seconds)
    after = proc_cpu_seconds(pid)
    return 100 * (after - before) / seconds if before is not None and after is not None else None


def merge_polls(polls: list[dict[str, Any]]) -> dict[str, Any]:
    """Several poll() windows of the same pollers as one: percentiles over every call, CPU per call averaged."""
    lat = sorted(x for p in polls for x in p["latencies_ms"])
    calls = max(len(lat), 1)
    seconds = sum(p["seconds"] for p in polls)

    def per_call(key: str) -> Optional[float]:
        values = [(p[key], p["calls"]) for p in polls if p[key] is not None]
        return sum(v * n for v, n in values) / calls if values else None
    return {**polls[0], "seconds": seconds, "calls": len(lat), "errors": sum(p["errors"] for p in polls),
            "calls_per_s": len(lat) / seconds, "latencies_ms": lat,
            "first_error": next((p["first_error"] for p in polls if p["first_error"]), None),
            "p50_ms": lat[min(len(lat) - 1, int(0.50 * len(lat)))] if lat else float("nan"),
            "p95_ms": lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("nan"),
            "server_cpu_ms_per_call": per_call("server_cpu_ms_per_call"),
            "client_cpu_ms_per_call": per_call("client_cpu_ms_per_call")}


def _raw_call(url: str, api_name: str, data: list) -> Any:
    import json as _json

    req = urllib.request.Request(f"{url.rstrip('/')}/gradio_api/call/{api_name}", method="POST",
                                 data=_json.dumps({"data": data}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        event_id = _json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{url.rstrip('/')}/gradio_api/call/{api_name}/{event_id}", timeout=60) as r:
        body = r.read().decode()
    if "event: complete" not in body:
        raise RuntimeError(body[:200])
    return body


def _rest_call(url: str) -> Any:
    import json as _json

    with urllib.request.urlopen(url, timeout=60) as r:
        body = _json.loads(r.read())
    if "status" not in body:
        raise RuntimeError(str(body)[:200])
    return body


def _poll_job_status(url: str, info: dict, data_dir: Path, work: Path, cfg: Config,
                     server_pid: Optional[int] = None) -> dict[str, Any]:
    """gradio_client pollers against /job_status while a real training job runs."""
    from gradio_client import Client

    from trainer_backend.jobs import JobManager

    manager = JobManager(data_dir)
    spec = {"project_name": "bench-poll", "output_dir": str(work / "poll-job"),
            "model": {"base_model": str(model_dir(cfg.model))},
            "data": {"path": str(CHAT_GSM8K), "chat_template": "chatml"},
            "lengths": {"block_size": 512},
            "training": {"max_steps": 10_000, "logging_steps": 1, "save_strategy": "no", "eval_strategy": "no"}}
    job = manager.submit(spec, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    args = [job.id] if info.get("parameters") else []
    deadline = time.time() + 120
    while manager.get(job.id).status != "running" and time.time() < deadline:
        time.sleep(0.5)
    clients = [Client(url, verbose=False) for _ in range(cfg.pollers)]  # connected before the clock starts
    calls = [lambda c=c: c.predict(*args, api_name="/job_status") for c in clients]
    # the same endpoint through Gradio's documented HTTP API (POST /gradio_api/call/..., then read the result):
    # a light client, so the figure is the server's latency rather than gradio_client's own CPU cost
    payload = args + [p.get("parameter_default") for p in info.get("parameters", [])[len(args):]]
    raw = [lambda: _raw_call(url, "job_status", payload)] * cfg.pollers
    # the judged light poller: the app's plain GET route for the same JSON (trainer_backend/ui/rest.py)
    rest = [lambda: _rest_call(f"{url.rstrip('/')}/api/v1/jobs/{job.id}")] * cfg.pollers
    while not any(e.get("event") == "log" for e in read_events(work / "poll-job")) and time.time() < deadline + 120:
        time.sleep(0.5)  # the model is loaded and steps are being logged
    # Training alone and training under the light pollers, in alternating windows (quiet, busy, quiet, ...), so
    # that drift in the job's own speed (batch lengths, warm caches) falls on both sides of the ratio alike.
    quiet, busy, rest_polls = [], [], []
    for _ in range(WINDOW_PAIRS):
        t = time.time()
        time.sleep(cfg.poll_seconds / (2 * WINDOW_PAIRS))
        quiet.append((t, time.time()))
        t = time.time()
        rest_polls.append(poll(rest, cfg.poll_seconds / (2 * WINDOW_PAIRS), cfg.interval, server_pid=server_pid))
        busy.append((t, time.time()))
    events = read_events(work / "poll-job")
    out = {"single": poll(calls[:1], cfg.poll_seconds / 4, server_pid=server_pid),
           "rest_paced": merge_polls(rest_polls),
           "raw_paced": poll(raw, cfg.poll_seconds / 2, cfg.interval, server_pid=server_pid),
           "tokens_per_s_quiet": _tokens_per_second(events, quiet),
           "tokens_per_s_polled": _tokens_per_second(events, busy),
           "paced": poll(calls, cfg.poll_seconds, cfg.interval, server_pid=server_pid),
           "tight": poll(calls, cfg.poll_seconds / 2, server_pid=server_pid)}
    out["job_status_during_poll"] = manager.get(job.id).status
    direct = []  # the work behind the endpoint, in this process: JobManager.describe (what service.status calls)
    for _ in range(20):
        t = time.perf_counter()
        manager.describe(job.id, series=False)
        direct.append(time.perf_counter() - t)
    out["describe_in_process_ms"] = 1000 * median(direct)
    out["job_id"] = job.id
    try:
        manager.stop(job.id, wait=True, timeout=60)
    except Exception:  # noqa: BLE001
        pass
    return out


def _tokens_per_second(events: list[dict], windows: list[tuple[float, float]]) -> Optional[float]:
    """Training throughput over wall-clock windows, pooled, from the job's own `log` events (tokens_seen)."""
    logs = [e for e in events if e.get("event") == "log" and e.get("tokens_seen") is not None]
    tokens = seconds = 0.0
    for start, end in windows:
        inside = [e for e in logs if start <= e["time"] <= end]
        if len(inside) >= 2 and inside[-1]["time"] > inside[0]["time"]:
            tokens += inside[-1]["tokens_seen"] - inside[0]["tokens_seen"]
            seconds += inside[-1]["time"] - inside[0]["time"]
    return tokens / seconds if seconds else None


def floor_reference(work: Path, cfg: Config) -> dict[str, Any]:
    """What this machine can serve at all, no training running: a do-nothing gr.api endpoint through
    gradio_client vs. a plain FastAPI GET route on the same server (bench/_floor_app.py)."""
    import json as _json

    from gradio_client import Client

    port = _free_port()
    env = child_env(None, PORT=str(port))
    proc = subprocess.Popen([python(), str(REPO / "bench" / "_floor_app.py")], env=env, cwd=REPO,
                            stdout=(work / "floor-app.log").open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(base + "/api/jobs/x", timeout=2).read()
                break
            except OSError:
                if time.perf_counter() - t0 > cfg.timeout or proc.poll() is not None:
                    raise RuntimeError(f"floor app did not start; see {work / 'floor-app.log'}")
                time.sleep(0.1)
        clients = [Client(base + "/", verbose=False) for _ in range(cfg.pollers)]
        gr_calls = [lambda c=c: c.predict("x", api_name="/job_status") for c in clients]
        rest_calls = [lambda: _json.loads(urllib.request.urlopen(base + "/api/jobs/x", timeout=30).read())
                      for _ in range(cfg.pollers)]
        return {"gradio_tight": poll(gr_calls, cfg.poll_seconds / 2, server_pid=proc.pid),
                "rest_tight": poll(rest_calls, cfg.poll_seconds / 2, server_pid=proc.pid)}
    finally:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            pass
        proc.wait(timeout=20)


def _cleanup(work: Path) -> None:
    """End any jobs process (supervisor, trainer) this benchmark started, by pid: their command lines name this
    run's private temp folder (the data dir or the job dir), which nothing else can."""
    try:
        import psutil
    except ImportError:
        return
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != me and str(work) in " ".join(proc.info.get("cmdline") or []):
                proc.terminate()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def run(work: Path, quick: bool = False, cfg: Optional[Config] = None) -> Result:
    cfg = cfg or (QUICK if quick else Config())
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data-dir"
    starts: list[float] = []
    figs: dict[str, Any] = {"config": vars(cfg)}
    app = None
    try:
        for i in range(cfg.repeats):
            app = App(work, data_dir, cfg.timeout)
            starts.append(app.start_s)
            if i < cfg.repeats - 1:
                app.close()
        figs["cold_start_s"] = starts
        start = median(starts)
        named = endpoints(app.url)
        figs["idle_cpu_percent"] = idle = _idle_cpu_percent(app.proc.pid, cfg.idle_seconds)
        figs["endpoints"] = sorted(named)
        if "/job_status" not in named:
            poll_part = (f"job_status: not available yet (the app exposes no /job_status endpoint; named endpoints: "
                         f"{sorted(named) or 'none'})")
            poll_ok = None
        else:
            try:
                p = figs["job_status"] = _poll_job_status(app.url, named["/job_status"], data_dir, work, cfg,
                                                             app.proc.pid)
                pc, rw, tg, one = p["paced"], p["rest_paced"], p["tight"], p["single"]
                gw = p["raw_paced"]
                quiet, polled = p["tokens_per_s_quiet"], p["tokens_per_s_polled"]
                tok_ratio = polled / quiet if quiet and polled else None
                tok_part = (f"{polled:.0f} vs {quiet:.0f} alone = {tok_ratio:.2f}x" if tok_ratio is not None
                            else "not measured (too few log events)")
                poll_part = (f"job_status while a job trains, {cfg.pollers} light HTTP pollers (GET /api/v1/jobs/"
                             f"<id>) at 1 call/{cfg.interval:g} s each: p50 {rw['p50_ms']:.0f} / p95 "
                             f"{rw['p95_ms']:.0f} ms ({rw['calls']} calls, {rw['errors']} errors, "
                             f"{rw['server_cpu_ms_per_call']:.1f} ms server CPU per call; target p95 <= "
                             f"{P95_TARGET_MS:.0f} ms); training tokens/s under them {tok_part} (target >= "
                             f"{TOKENS_RATIO_TARGET}); the same through Gradio's call API (POST + SSE GET) p50 "
                             f"{gw['p50_ms']:.0f} / p95 {gw['p95_ms']:.0f} ms ({gw['errors']} errors); "
                             f"{cfg.pollers} gradio_client pollers p50 {pc['p50_ms']:.0f} / p95 {pc['p95_ms']:.0f} ms; "
                             f"back-to-back "
                             f"gradio_client {tg['calls_per_s']:.0f} calls/s, CPU per call "
                             f"{tg['server_cpu_ms_per_call']:.0f} ms server + {tg['client_cpu_ms_per_call']:.0f} ms "
                             f"client; 1 poller p50 {one['p50_ms']:.0f} ms; describe() behind it "
                             f"{p['describe_in_process_ms']:.1f} ms")
                poll_ok = rw["errors"] == 0 and rw["p95_ms"] <= P95_TARGET_MS and \
                    (tok_ratio is None or tok_ratio >= TOKENS_RATIO_TARGET)
            except Exception as exc:  # noqa: BLE001
                poll_part = f"job_status polling failed: {type(exc).__name__}: {exc}"
                poll_ok = False
        if cfg.floor:
            try:
                f = figs["floor"] = floor_reference(work, cfg)
                g, r = f["gradio_tight"], f["rest_tight"]
                poll_part += (f"; floor, do-nothing endpoint, {cfg.pollers} back-to-back pollers: gradio_client "
                              f"{g['calls_per_s']:.0f} calls/s (CPU/call {g['server_cpu_ms_per_call']:.0f} ms server + "
                              f"{g['client_cpu_ms_per_call']:.0f} ms client), plain HTTP GET {r['calls_per_s']:.0f} "
                              f"calls/s")
            except Exception as exc:  # noqa: BLE001
                poll_part += f"; floor reference failed: {type(exc).__name__}: {exc}"
    finally:
        if app is not None:
            app.close()
        _cleanup(work)
    start_ok = start <= START_TARGET_S
    ok = None if quick else (start_ok and poll_ok is not False)
    n = f"median of {cfg.repeats}" if cfg.repeats > 1 else "1 run"
    idle = figs.get("idle_cpu_percent")
    idle_part = f"idle app {idle:.1f}% of a core; " if idle is not None else ""
    line = (f"app: cold start (process start -> HTTP 200) {start:.2f} s ({n}; target <= {START_TARGET_S:.0f} s); "
            f"{idle_part}{poll_part}{verdict(ok)}")
    return Result("app", line, figs, ok)
