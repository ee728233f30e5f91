"""The VLM agent: any Hugging Face vision-language model (LLaVA, LLaVA-NeXT, Qwen2-VL,
Qwen2.5-VL) as a policy with a value head, LoRA or full fine-tuning. (The embedded tiny models
are built in `vlmrl.tiny`, a layer above: to this one they are folders like any other.)"""

from vlmrl.policy.families import FAMILIES
from vlmrl.policy.loading import LoraSettings, load_policy
from vlmrl.policy.policy import Policy, Sample, Scores
from vlmrl.policy.saving import export_merged, load_trainable, save_trainable

__all__ = [
    "FAMILIES",
    "LoraSettings",
    "Policy",
    "Sample",
    "Scores",
    "export_merged",
    "load_policy",
    "load_trainable",
    "save_trainable",
]
