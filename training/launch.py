"""How the training process starts: `python -m training.run_job` for one process, `accelerate launch` for several
(DDP by default; FSDP or DeepSpeed ZeRO through the run's accelerate config file). The same command serves CPU
processes (gloo) and GPUs (one process per device)."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

from training.config import ConfigError, TrainConfig


def _free_port() -> int:
    # Two distributed runs on one machine must not share the rendezvous port.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_distributed(cfg: TrainConfig) -> bool:
    return int(cfg.num_processes) > 1 or bool(cfg.accelerate_config)


def train_command(cfg: TrainConfig, run_id: int, *, resume: bool) -> list[str]:
    entry = ["-m", "training.run_job", "--run-id", str(run_id)] + (["--resume"] if resume else [])
    if not is_distributed(cfg):
        return [sys.executable, *entry]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(int(cfg.num_processes)),
           "--num_machines", "1", "--main_process_port", str(_free_port())]
    if cfg.accelerate_config:
        path = Path(cfg.accelerate_config).expanduser()
        if not path.is_file():
            raise ConfigError(f"accelerate config file '{path}' does not exist on this worker")
        cmd += ["--config_file", str(path)]
    else:
        # torchrun's launcher; without CUDA the processes join a gloo group on the CPU.
        cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return cmd + entry
