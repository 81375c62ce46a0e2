"""How the training process starts: `python -m training.run_job` for one process, `accelerate launch` for several
(DDP by default; FSDP or DeepSpeed ZeRO through an accelerate config file named by the run, kept in
$RATIONAL_HOME/accelerate). The same command serves CPU processes (gloo) and GPUs (one process per device)."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

from db.engine import rational_home
from training.config import ConfigError, TrainConfig


def _free_port() -> int:
    # Two distributed runs on one machine must not share the rendezvous port.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_configs() -> Path:
    """Where accelerate config files live (a run names one; a path from a page could point anywhere)."""
    return rational_home() / "accelerate"


def is_distributed(cfg: TrainConfig) -> bool:
    return int(cfg.num_processes) > 1 or bool(cfg.accelerate_config)


def train_command(cfg: TrainConfig, run_id: int, *, resume: bool) -> list[str]:
    entry = ["-m", "training.run_job", "--run-id", str(run_id)] + (["--resume"] if resume else [])
    if not is_distributed(cfg):
        return [sys.executable, *entry]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1",
           "--main_process_port", str(_free_port())]
    if int(cfg.num_processes) > 1 or not cfg.accelerate_config:  # else the config file's own count stands
        cmd += ["--num_processes", str(int(cfg.num_processes))]
    if cfg.accelerate_config:
        path = accelerate_configs() / cfg.accelerate_config
        if not path.is_file():
            raise ConfigError(f"accelerate config '{cfg.accelerate_config}' is not in {accelerate_configs()} "
                              "on this worker")
        cmd += ["--config_file", str(path)]
    else:
        # torchrun's launcher; without CUDA the processes join a gloo group on the CPU.
        cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return cmd + entry
