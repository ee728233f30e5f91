"""The VLM agent: any Hugging Face vision-language model (LLaVA, LLaVA-NeXT, Qwen2-VL,
Qwen2.5-VL) as a policy with a value head, LoRA or full fine-tuning, and tiny random models
of each family built offline for tests and the CPU demo."""

from vlmrl.policy.families import FAMILIES
from vlmrl.policy.loading import LoraSettings, load_policy
from vlmrl.policy.policy import Policy, Sample, Scores
from vlmrl.policy.saving import export_merged, load_trainable, save_trainable
from vlmrl.policy.tiny import SIZES, build_tiny_model, demo_model

__all__ = [
    "FAMILIES",
    "SIZES",
    "LoraSettings",
    "Policy",
    "Sample",
    "Scores",
    "build_tiny_model",
    "demo_model",
    "export_merged",
    "load_policy",
    "load_trainable",
    "save_trainable",
]
