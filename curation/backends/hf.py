"""transformers backend: batched `generate` with left padding; greedy or sampled; CPU or GPU."""
from __future__ import annotations

import time
from typing import Optional

from core.settings import get_settings
from curation.backends.base import BackendError, ChatRequest, ChatResult, Completion, Streaming


class TransformersBackend(Streaming):
    name = "transformers"

    def __init__(self, model: str, *, device: Optional[str] = None, dtype: str = "auto", batch_size: int = 8,
                 threads: Optional[int] = None, tokenizer=None, hf_model=None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # On a busy CPU, torch's spinning intra-op threads slow each other down badly (4x measured on 2 shared
        # cores): RATIONAL_TORCH_THREADS / threads=1 is the fix there. Process-wide, as torch makes it.
        threads = threads or get_settings().rational_torch_threads
        if threads:
            torch.set_num_threads(threads)

        self.model = str(model)
        self.batch_size = max(1, int(batch_size))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(self.model)
        if self.tokenizer.chat_template is None:
            raise BackendError(f"{self.model}: the tokenizer has no chat template; use an instruct/chat model")
        self.tokenizer.padding_side = "left"  # decoder-only batches must be left padded
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16,
                       "float16": torch.float16}[dtype]
        self.hf_model = hf_model or AutoModelForCausalLM.from_pretrained(self.model, dtype=torch_dtype)
        self.hf_model.to(self.device).eval()
        self._eos = self._eos_ids()
        self._queue: list = []
        self._seeded: Optional[int] = None

    def _eos_ids(self) -> list[int]:
        ids = self.hf_model.generation_config.eos_token_id
        ids = list(ids) if isinstance(ids, (list, tuple)) else ([ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def render(self, req: ChatRequest) -> str:
        if req.continue_final_message:
            return self.tokenizer.apply_chat_template(list(req.messages), tokenize=False,
                                                      continue_final_message=True)
        return self.tokenizer.apply_chat_template(list(req.messages), tokenize=False, add_generation_prompt=True)

    def submit(self, key, request: ChatRequest) -> None:
        if request.lora:
            raise BackendError("transformers backend: per-request LoRA adapters are not supported; load the "
                               "adapter into the model (hf_model=PeftModel) instead")
        self._queue.append((key, request))

    def pending(self) -> int:
        return len(self._queue)

    def poll(self, timeout_s: float = 1.0) -> list:
        """One batch: the oldest queued request and up to batch_size - 1 more that share its sampling and n."""
        if not self._queue:
            return []
        first = self._queue[0][1]
        group = [(k, r) for k, r in self._queue if (r.sampling, r.n) == (first.sampling, first.n)][:self.batch_size]
        taken = {id(r) for _, r in group}
        self._queue = [(k, r) for k, r in self._queue if id(r) not in taken]
        results = self._generate_batch([r for _, r in group], first.sampling, first.n)
        return [(k, res) for (k, _), res in zip(group, results)]

    def _generate_batch(self, reqs: list[ChatRequest], sampling, n: int) -> list[ChatResult]:
        import torch

        texts = [self.render(r) for r in reqs]
        # Chat templates already hold any BOS token; adding special tokens again would double it.
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        # Greedy samples are identical (and generate refuses greedy with n > 1): generate one, copy it.
        per_prompt = 1 if sampling.greedy else n
        kwargs = dict(max_new_tokens=sampling.max_tokens, num_return_sequences=per_prompt, eos_token_id=self._eos,
                      pad_token_id=self.tokenizer.pad_token_id)
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = sampling.repetition_penalty
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        if sampling.seed is not None and sampling.seed != self._seeded:
            torch.manual_seed(sampling.seed)  # once per seed: reseeding every batch would repeat its noise
            self._seeded = sampling.seed
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.hf_model.generate(**enc, **kwargs)
        seconds = time.perf_counter() - t0
        width = enc["input_ids"].shape[1]
        new = out[:, width:].tolist()
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        results = []
        for b, r in enumerate(reqs):
            comps = [self._completion(new[b * per_prompt + k % per_prompt], sampling) for k in range(n)]
            results.append(ChatResult(comps, int(prompt_lens[b]), seconds / len(reqs), self.name, self.model))
        return results

    def _completion(self, ids: list[int], sampling) -> Completion:
        # A sample ends at its first EOS; what follows is batch padding. A sample without EOS ran to max_tokens.
        n_tok, finish = len(ids), "length"
        for j, t in enumerate(ids):
            if t in self._eos:
                n_tok, finish = j + 1, "stop"
                break
        text = self.tokenizer.decode(ids[:n_tok], skip_special_tokens=True)
        for s in sampling.stop:
            if s in text:
                text, finish = text[:text.index(s)], "stop"
                pad = self.tokenizer.pad_token_id
                while n_tok and ids[n_tok - 1] == pad:  # a stop string ends a sample early; padding follows
                    n_tok -= 1
        return Completion(text, n_tok, finish)

    def close(self) -> None:
        self.hf_model = None
