"""The memory outside memlog's own engine: attached to a model the caller holds, or exported
as a PEFT LoRA adapter."""
