"""Launcher for the test argilla-server (run with the .venv-argilla python, never imported by pytest).

    python tests/argilla_server/launch.py bootstrap   # alembic upgrade + owner user with a known API key
    python tests/argilla_server/launch.py server PORT # uvicorn argilla_server:app on 127.0.0.1:PORT
    python tests/argilla_server/launch.py worker      # one rq worker on Argilla's queues

`python -m argilla_server ...` crashes under current click, so the same steps go through argilla_server's own
modules here. Settings come from ARGILLA_* environment variables (database, redis, elasticsearch URL, home path).
Both the server and the worker register the osmem-compatible engine before anything asks for a search engine.
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ARGILLA_SEARCH_ENGINE", "opensearch")

import osmem_engine  # noqa: E402

osmem_engine.register()


def bootstrap() -> None:
    from alembic.config import main as alembic_main
    from argilla_server.database import ALEMBIC_CONFIG_FILE

    alembic_main(argv=["-c", ALEMBIC_CONFIG_FILE, "upgrade", "head"])
    asyncio.run(_create_owner())


async def _create_owner() -> None:
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, UserRole, Workspace

    username = os.environ.get("ARGILLA_OWNER_USERNAME", "owner")
    api_key = os.environ["ARGILLA_OWNER_API_KEY"]
    password = os.environ.get("ARGILLA_OWNER_PASSWORD", "owner-password-1")
    workspace = os.environ.get("ARGILLA_OWNER_WORKSPACE", "rational")
    async with AsyncSessionLocal() as session:
        if await accounts.get_user_by_username(session, username):
            return
        await User.create(
            session,
            first_name=username,
            username=username,
            role=UserRole.owner,
            password_hash=accounts.hash_password(password),
            api_key=api_key,
            workspaces=[Workspace(name=workspace)],
        )


def server(port: int) -> None:
    import uvicorn

    uvicorn.run("argilla_server:app", host="127.0.0.1", port=port, access_log=False, log_level="warning")


def worker() -> None:
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
    from rq import Worker

    Worker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION).work(with_scheduler=False)


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "bootstrap":
        bootstrap()
    elif cmd == "server":
        server(int(sys.argv[2]))
    elif cmd == "worker":
        worker()
    else:
        sys.exit("usage: launch.py bootstrap | server PORT | worker")
