"""Subprocess entry: `python -m training.run_job --run-id N [--resume] [--owner-pid P]`, directly or once per
process under `accelerate launch`; the database is DATABASE_URL.

The worker starts this so a cancel or a crash (OOM, a kill) ends only this process and frees its memory; the
exit status and the log file tell the worker what happened.
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.run_job")
    ap.add_argument("--run-id", type=int, required=True)
    ap.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    ap.add_argument("--owner-pid", type=int, default=None,
                    help="the worker's PID: training stops at a checkpoint when it is gone (default: the parent)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from db.engine import make_engine
    from training.runner import WorkerGone, run_training

    engine = make_engine()
    try:
        run_training(engine, args.run_id, resume=args.resume, owner=args.owner_pid)
    except WorkerGone as e:  # expected after a worker crash: one line in the log, not a traceback
        print(e, flush=True)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
