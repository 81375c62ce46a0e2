"""The training process itself (runs in the subprocess that `training.run_job` starts; imports torch/TRL).

Every logged step, evaluation and checkpoint goes into the database through a TrainerCallback, so the worker and the
UI can follow the run without sharing memory with it. The adapter is published (renamed into place and recorded)
only when training ran to its end under its worker; a run stopped early leaves checkpoints to resume from.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.settings import get_settings
from curation.backends.catalog import resolve_model
from curation.backends.lora import merge_adapter
from db.models import ExportSnapshot, TrainingCheckpoint, TrainingMetric, TrainingRun
from training.config import TrainConfig

log = logging.getLogger("rational.training")
_GENERATION = re.compile(r"{%-?\s*generation\s*-?%}")
_KNOWN = {"loss", "learning_rate", "grad_norm", "epoch", "eval_loss"}


class WorkerGone(RuntimeError):
    """The worker that owns the run died; training stopped at a checkpoint and published no adapter."""


def _flag(value: str, auto: bool) -> bool:
    return auto if str(value) == "auto" else str(value).lower() == "true"


def _cpu_bf16() -> bool:
    """A CPU with native bf16 (AVX512-BF16 or AMX): bf16 autocast there trained SmolLM2-135M 1.7x faster than fp32
    (12.2 vs 20.6 s per step of 8 rows on 2 cores); elsewhere bf16 is emulated and slower."""
    import torch

    cpu = getattr(torch, "cpu", None)
    return any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def owner_alive(pid: int) -> bool:
    """Whether the worker that started this run still lives (on Linux a zombie counts as gone)."""
    if Path("/proc/self/stat").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
        except OSError:
            return False
    try:  # no /proc (macOS): ask the kernel
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _agreed(flag: bool, args) -> bool:
    """One decision for all processes of a distributed run: if any rank sees the flag, all act on it (a rank that
    stopped alone would leave the others waiting in a collective)."""
    import torch.distributed as dist

    if args.world_size <= 1 or not dist.is_initialized():
        return flag
    import torch

    t = torch.tensor([int(flag)], device=args.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _metrics_callback(engine: Engine, run_id: int, owner: int):
    from transformers import TrainerCallback

    class DatabaseMetrics(TrainerCallback):
        """Write each log, evaluation and checkpoint as rows (from the main process only, so a distributed run
        records each once); stop when the worker that owns the run is gone."""

        def __init__(self):
            self.owner_gone = False
            self.parent = os.getppid()  # the worker, or the launcher of a distributed run
            self.last_t = time.perf_counter()
            self.last_tokens = 0

        def on_train_begin(self, args, state, control, **kw):
            self.last_t, self.last_tokens = time.perf_counter(), state.num_input_tokens_seen or 0
            if not state.is_world_process_zero:
                return
            print(f"training on {args.world_size} process(es), {args.parallel_mode.value}, device {args.device}",
                  flush=True)
            with engine.begin() as c:
                c.execute(update(TrainingRun).where(TrainingRun.id == run_id)
                          .values(max_steps=state.max_steps, global_step=state.global_step))

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero:
                return
            logs = dict(logs or {})
            if "train_loss" in logs and "loss" not in logs:  # the closing summary, stored on the run instead
                return
            now, tokens = time.perf_counter(), state.num_input_tokens_seen or 0
            is_eval = "eval_loss" in logs
            tps = None
            if not is_eval and tokens > self.last_tokens and now > self.last_t:
                tps = (tokens - self.last_tokens) / (now - self.last_t)
                self.last_t, self.last_tokens = now, tokens
            row = dict(run_id=run_id, step=state.global_step, kind="eval" if is_eval else "train",
                       epoch=logs.get("epoch"), loss=logs.get("eval_loss" if is_eval else "loss"),
                       learning_rate=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"), tokens_per_s=tps,
                       values={k: v for k, v in logs.items() if k not in _KNOWN and isinstance(v, (int, float))})
            with engine.begin() as c:
                c.execute(insert(TrainingMetric), [row])
                c.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(global_step=state.global_step))

        def on_save(self, args, state, control, **kw):
            if not state.is_world_process_zero:
                return
            path = str(Path(args.output_dir) / f"checkpoint-{state.global_step}")
            with engine.begin() as c:
                c.execute(delete(TrainingCheckpoint).where(TrainingCheckpoint.run_id == run_id,
                                                           TrainingCheckpoint.step == state.global_step))
                c.execute(insert(TrainingCheckpoint), [dict(run_id=run_id, step=state.global_step, path=path)])
                c.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(last_checkpoint=path))

        def gone(self) -> bool:
            return os.getppid() != self.parent or not owner_alive(owner)

        def on_step_end(self, args, state, control, **kw):
            if self.owner_gone or not _agreed(self.gone(), args):
                return
            # The worker died: do not train on as an orphan; save a checkpoint to resume from.
            self.owner_gone = True
            if state.is_world_process_zero:
                print(f"the worker process is gone; stopping at step {state.global_step}/{state.max_steps}",
                      flush=True)
            control.should_training_stop = True
            control.should_save = True

    return DatabaseMetrics()


def _load_datasets(snapshot: ExportSnapshot, method: str):
    hf = Path(snapshot.path or "") / "hf"
    if not hf.is_dir():
        raise FileNotFoundError(f"export '{snapshot.name}' has no HF dataset folder at {hf} (export with format hf)")
    from datasets import Dataset

    # Load split by split: datasets cannot load a saved DatasetDict holding an empty split (IndexError).
    splits = {}
    for name in ("train", "validation"):
        try:
            splits[name] = Dataset.load_from_disk(str(hf / name)) if (hf / name).is_dir() else None
        except IndexError:
            splits[name] = None
    if splits["train"] is None or splits["train"].num_rows == 0:
        raise ValueError(f"export '{snapshot.name}' has no training rows; approve more traces before training")
    cols = ["messages"] if method == "sft" else ["prompt", "chosen", "rejected"]
    train = splits["train"].select_columns(cols)
    val = splits["validation"].select_columns(cols) if splits["validation"] is not None and \
        splits["validation"].num_rows else None
    return train, val


def _model_and_peft(base: str, cfg: TrainConfig, cuda: bool):
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    use_qlora = False
    if cuda:
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        try:
            import bitsandbytes  # noqa: F401
            has_bnb = True
        except ImportError:
            has_bnb = False
        use_qlora = _flag(cfg.qlora, has_bnb) and has_bnb
        if use_qlora:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=kwargs["dtype"])
            # The Trainer does not move a quantized model: each process of a distributed run loads onto its GPU.
            kwargs["device_map"] = {"": get_settings().local_rank}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base)
    qc = getattr(config, "quantization_config", None)
    if isinstance(qc, dict) and qc.get("quant_method") == "gguf":
        # A GGUF-converted folder holds dequantized weights but may still claim GGUF (untrainable) quantization.
        del config.quantization_config
        kwargs["config"] = config
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    if use_qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(cfg.trl.get("gradient_checkpointing")))
    peft = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules, task_type="CAUSAL_LM", bias="none")
    return model, peft, use_qlora


def _model_loss_sft(base):
    """SFT with the model's own loss. TRL's fused LM head saves the logits' memory, but off CUDA it has no Triton
    kernel: it scores every position (padding included) tile by tile, adds entropy and top-1 passes and recomputes
    the projection in backward, about 20% of a step on a CPU (bench/training.py). Same loss and gradients; the
    entropy and token-accuracy metrics are not logged."""
    from transformers import Trainer

    class ModelLossSFTTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs["use_cache"] = False
            return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return ModelLossSFTTrainer


def build_trainer(*, base: str, cfg: TrainConfig, train, val, output_dir: str, callbacks=()):
    """One construction path for SFT and DPO trainers (the benchmark's plain-TRL arm uses TRL directly)."""
    import torch
    from transformers import AutoTokenizer

    cuda = torch.cuda.is_available()
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model, peft, use_qlora = _model_and_peft(base, cfg, cuda)
    bf16 = _flag(cfg.bf16, torch.cuda.is_bf16_supported() if cuda else _cpu_bf16())
    trl = dict(cfg.trl)
    checkpointing = trl.pop("gradient_checkpointing", None)
    if checkpointing is not None:  # renamed in transformers 5 (the old name warns); TRL's default is on
        from transformers import TrainingArguments

        key = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
               else "gradient_checkpointing")
        trl[key] = bool(checkpointing)
    batch = trl.get("per_device_train_batch_size", 8)
    # Our defaults first, then the config's TRL fields; the run itself owns output_dir and the device flags.
    common = {
        **dict(per_device_eval_batch_size=batch, save_strategy="steps", fp16=cuda and not bf16 and not use_qlora,
               eval_strategy="steps" if val is not None else "no", include_num_input_tokens_seen="non_padding",
               dataloader_num_workers=0),
        **trl,
        **dict(eval_steps=trl.get("eval_steps") or trl.get("save_steps"), output_dir=output_dir, report_to=[],
               use_cpu=not cuda, bf16=bf16, disable_tqdm=True),
    }
    notes = []
    callbacks = list(callbacks)
    if cfg.method == "sft":
        from trl import SFTConfig, SFTTrainer

        has_markers = bool(_GENERATION.search(tok.chat_template or ""))
        assistant_only = _flag(cfg.assistant_only_loss, has_markers)
        if assistant_only and not has_markers:
            notes.append("warning: the chat template has no {% generation %} markers, so assistant_only_loss is "
                         "off and the loss covers the prompt tokens too")
            assistant_only = False
        flash = False
        try:
            import flash_attn  # noqa: F401
            flash = cuda
        except ImportError:
            pass
        packing = _flag(cfg.packing, flash)
        if packing and not flash:
            notes.append("warning: packing without flash attention lets packed examples attend to each other")
        args = SFTConfig(**common, assistant_only_loss=assistant_only, packing=packing,
                         padding_free=packing and flash)
        cls = SFTTrainer if cuda else _model_loss_sft(SFTTrainer)
        trainer = cls(model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=tok,
                      peft_config=peft, callbacks=callbacks)
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common)
        trainer = DPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=tok,
                             peft_config=peft, callbacks=callbacks)
    for n in notes:
        log.warning(n)
        print(n, flush=True)
    return trainer, tok, notes


def run_training(engine: Engine, run_id: int, *, resume: bool = False, owner: int | None = None) -> dict:
    """Train one run. `owner` is the worker's PID (under `accelerate launch` the parent is the launcher); every
    process of a distributed run calls this, and only the main one writes the adapter and the run's row."""
    with Session(engine) as s:
        run = s.get(TrainingRun, run_id)
        if run is None:
            raise ValueError(f"training run {run_id} does not exist")
        snapshot = s.get(ExportSnapshot, run.export_id) if run.export_id else None
        if snapshot is None or snapshot.status != "ready":
            raise ValueError(f"training run {run_id}: its export is missing or not ready")
        cfg = TrainConfig.from_dict(run.config)
        base_name, out = run.base_model, Path(run.output_dir)
    base = resolve_model(base_name)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last = _last_complete_checkpoint(engine, run_id) if resume else None
    if resume and last is None:
        print("no checkpoint to resume from; starting from the beginning", flush=True)
    if last is not None:
        step = int(Path(last).name.split("-")[-1])
        print(f"resuming from {last} (step {step})", flush=True)
        with engine.begin() as c:  # steps after the checkpoint are trained again; drop their old rows
            c.execute(delete(TrainingMetric).where(TrainingMetric.run_id == run_id, TrainingMetric.step > step))
    elif not resume:
        with engine.begin() as c:
            c.execute(delete(TrainingMetric).where(TrainingMetric.run_id == run_id))
    train, val = _load_datasets(snapshot, cfg.method)
    print(f"{cfg.method} on export '{snapshot.name}' ({train.num_rows} train rows, "
          f"{val.num_rows if val is not None else 0} validation) from {base}", flush=True)
    watcher = _metrics_callback(engine, run_id, owner or os.getppid())
    trainer, tok, notes = build_trainer(base=base, cfg=cfg, train=train, val=val, output_dir=str(ckpt_dir),
                                        callbacks=[watcher])
    result = trainer.train(resume_from_checkpoint=last)
    if watcher.owner_gone or _agreed(watcher.gone(), trainer.args):
        # Stopped early, or finished with nobody to record it: not a final adapter.
        raise WorkerGone(f"the worker is gone; stopped at step {trainer.state.global_step}/"
                         f"{trainer.state.max_steps} with a checkpoint and no adapter; resume the run to finish it")
    metrics = dict(result.metrics)
    evaluated = [h for h in trainer.state.log_history if "eval_loss" in h]
    if val is not None and (not evaluated or evaluated[-1].get("step") != trainer.state.global_step):
        metrics.update(trainer.evaluate())
    elif evaluated:
        metrics["eval_loss"] = evaluated[-1]["eval_loss"]
    metrics["world_size"] = trainer.args.world_size
    adapter, tmp = out / "adapter", out / "adapter.partial"
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))  # every process takes part (FSDP and ZeRO gather the weights); the main one writes
    trainer.accelerator.wait_for_everyone()
    if not main:
        return metrics
    tok.save_pretrained(str(tmp))
    _write_card(tmp, snapshot, base_name, cfg, metrics, notes)
    shutil.rmtree(adapter, ignore_errors=True)
    os.rename(tmp, adapter)  # a kill while saving leaves adapter.partial, never a half-written adapter/
    merged = None
    if cfg.merge:
        merged = merge_adapter(base, adapter, out / "merged")
    with engine.begin() as c:
        c.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(
            adapter_path=str(adapter), merged_path=str(merged) if merged else None,
            global_step=trainer.state.global_step,
            metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))}))
    print(f"adapter saved to {adapter}", flush=True)
    return metrics


def _last_complete_checkpoint(engine: Engine, run_id: int) -> str | None:
    """The newest checkpoint recorded in the database (rows are written after the save completes) that is still
    on disk; a folder a kill interrupted mid-save is never chosen."""
    from sqlalchemy import select

    with Session(engine) as s:
        paths = s.execute(select(TrainingCheckpoint.path).where(TrainingCheckpoint.run_id == run_id)
                          .order_by(TrainingCheckpoint.step.desc())).scalars().all()
    return next((p for p in paths if (Path(p) / "trainer_state.json").exists()), None)


def _write_card(adapter: Path, snapshot: ExportSnapshot, base: str, cfg: TrainConfig, metrics: dict,
                notes: list[str]) -> None:
    lines = ["---", f"base_model: {base}", "library_name: peft", "tags:", "- lora", f"- {cfg.method}",
             "- rational-studio", "---", "", f"# LoRA adapter ({cfg.method.upper()}) for {base}", "",
             "Reasoning-enhanced safety fine-tuning (RATIONAL, arXiv 2503.05021) with Rational Studio.", "",
             f"- export snapshot: `{snapshot.name}` (sha256 `{snapshot.sha256}`, {snapshot.row_count} rows)",
             f"- base model: `{base}`", f"- method: {cfg.method}", "",
             "Load with `PeftModel.from_pretrained(base, this_folder)` or serve with "
             f"`vllm serve {base} --enable-lora --lora-modules NAME=this_folder`.", "",
             "## Config", "", "```json", json.dumps(cfg.to_dict(), indent=2, sort_keys=True), "```", "",
             "## Final metrics", "", "```json",
             json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, indent=2, sort_keys=True),
             "```", ""]
    lines += [f"> {n}" for n in notes]
    (adapter / "README.md").write_text("\n".join(lines), encoding="utf-8")
