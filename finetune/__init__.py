"""LoRA fine-tuning pipeline that teaches a model the CML protocol."""
