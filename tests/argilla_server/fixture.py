"""pytest plugin: a real argilla-server 2.8.0 for the `argilla` tests (session scope).

Real: the Argilla server (FastAPI app, its REST API, its SQLite database and alembic migrations), its rq worker,
Redis, and the `argilla` SDK the project uses. Stand-in: osmem-server, an in-memory OpenSearch-compatible server,
replaces OpenSearch/Elasticsearch; tests/argilla_server/osmem_engine.py swaps Argilla's three painless-script
updates for read-modify-write (osmem cannot run scripts). Everything listens on free loopback ports.

The server's pins (old fastapi, pydantic, sqlalchemy) conflict with the project, so it runs from its own venv,
built by tests/argilla_server/build_venv.sh (RATIONAL_ARGILLA_VENV, default .venv-argilla; reused when present).
Where that venv cannot be built or the server does not start, the tests skip with the reason, except under
CI=true, where they fail: CI must run them.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
START_TIMEOUT_S = 240


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(why + " (CI must run the argilla tests)")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _venv() -> Path:
    venv = Path(os.environ.get("RATIONAL_ARGILLA_VENV") or ROOT / ".venv-argilla")
    res = subprocess.run(["bash", str(HERE / "build_venv.sh"), str(venv)], capture_output=True, text=True,
                         timeout=900)
    if res.returncode != 0:
        _unavailable(f"argilla-server venv could not be built at {venv}: {(res.stderr or res.stdout)[-600:]}")
    return venv


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


class _Procs:
    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.items: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict, **kw) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "w")
        p = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, **kw)
        self.items.append((name, p))
        return p

    def dead(self) -> list[str]:
        return [f"{n} exited with {p.returncode}: {_tail(self.logdir / f'{n}.log', 1500)}"
                for n, p in self.items if p.poll() is not None]

    def stop(self) -> None:
        for _, p in reversed(self.items):
            if p.poll() is None:
                p.terminate()
        for _, p in reversed(self.items):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def _status_ok(url: str, key: str) -> bool:
    req = urllib.request.Request(f"{url}/api/v1/status", headers={"X-Argilla-Api-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory):
    """Yields {"url", "api_key", "workspace", "owner"} of a running server; stops everything afterwards."""
    venv = _venv()
    py = str(venv / "bin" / "python")
    home = tmp_path_factory.mktemp("argilla")
    procs = _Procs(home)
    try:
        osmem_bin = subprocess.run([py, "-c", "import osmem_server; print(osmem_server.resolve_binary())"],
                                   capture_output=True, text=True, check=True).stdout.strip()
        es_port, redis_port, port = _free_port(), _free_port(), _free_port()
        # stdin stays open as a pipe: osmem exits when it closes, i.e. when this process goes away
        procs.start("osmem", [osmem_bin, "--addr", f"127.0.0.1:{es_port}", "--no-ja", "--parent-pid",
                              str(os.getpid())], os.environ.copy(), stdin=subprocess.PIPE)
        if shutil.which("redis-server"):
            procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no"], os.environ.copy())
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        else:
            redis_url = os.environ.get("RATIONAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
        key = "owner.key." + secrets.token_hex(12)
        env = {**os.environ, "ARGILLA_HOME_PATH": str(home), "ARGILLA_DATABASE_URL":
               f"sqlite+aiosqlite:///{home / 'argilla.db'}", "ARGILLA_ELASTICSEARCH": f"http://127.0.0.1:{es_port}",
               "ARGILLA_SEARCH_ENGINE": "opensearch", "ARGILLA_REDIS_URL": redis_url,
               "ARGILLA_OWNER_API_KEY": key, "ARGILLA_OWNER_WORKSPACE": "rational",
               "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "ARGILLA_ENABLE_TELEMETRY": "0"}
        env.pop("PYTHONPATH", None)
        launch = str(HERE / "launch.py")
        boot = subprocess.run([py, launch, "bootstrap"], env=env, capture_output=True, text=True, timeout=300)
        if boot.returncode != 0:
            _unavailable(f"argilla-server bootstrap failed: {(boot.stderr or boot.stdout)[-1500:]}")
        procs.start("server", [py, launch, "server", str(port)], env)
        procs.start("worker", [py, launch, "worker"], env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _status_ok(url, key):
            dead = procs.dead()
            if dead or time.monotonic() > deadline:
                _unavailable("argilla-server did not answer /api/v1/status: " +
                             ("; ".join(dead) or f"timeout {START_TIMEOUT_S} s; " + _tail(home / "server.log")))
            time.sleep(0.5)
        yield {"url": url, "api_key": key, "workspace": "rational", "owner": "owner", "logs": home}
    finally:
        procs.stop()
