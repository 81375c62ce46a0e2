"""LoRA training (TRL SFT / DPO) on export snapshots, run by the worker in a subprocess."""
