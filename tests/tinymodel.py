"""A tiny random-weight Llama (~1M parameters) with a locally trained byte-level BPE tokenizer.

Nothing is downloaded: the tokenizer is trained on prompts from the built-in sets and the weights are random.
Used by the test fixture `tiny_model_dir` (tests/fixtures_ml.py) and by benches/scripts.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

# ChatML. `{% generation %}` marks assistant content for TRL's assistant_only_loss.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
VOCAB_SIZE = 1000

_DATA = Path(__file__).resolve().parent.parent / "curation" / "prompts" / "builtin" / "data"


def _corpus() -> list[str]:
    """Prompt texts from a few built-in sets, plus chat-ish filler so common words get merges."""
    lines: list[str] = []
    for rel, col in [("xstest/xstest_prompts.csv", "prompt"), ("advbench/harmful_behaviors.csv", "goal"),
                     ("jailbreakbench/jbb_harmful_behaviors.csv", "Goal")]:
        path = _DATA / rel
        if path.exists():
            with path.open(newline="", encoding="utf-8") as fh:
                lines += [row.get(col) or "" for row in csv.DictReader(fh)]
    lines += ["I'm sorry, but I can't help with that. Here is a safe alternative.",
              "Sure, here is how you can do it step by step.", "The request is safe. The request is harmful."]
    return [x for x in lines if x]


def build_tiny_model(out_dir, seed: int = 0) -> Path:
    """Write a tiny Llama + tokenizer to `out_dir` (save_pretrained layout) and return the folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, padding_side="left", model_max_length=2048,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    # head_dim 32 (not hidden/heads = 16) because vLLM's CPU attention supports head sizes from 32 up.
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=1024, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048,
        tie_word_embeddings=False, pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id,
        bos_token_id=None, torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.generation_config.eos_token_id = fast.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    (out / "tiny_model.json").write_text(json.dumps({"params": sum(p.numel() for p in model.parameters())}))
    return out


if __name__ == "__main__":
    import sys

    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-model"))
