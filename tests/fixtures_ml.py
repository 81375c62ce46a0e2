"""Model fixtures (tiny local Llama + tokenizer, built once per session). Filled in by the generation work."""
