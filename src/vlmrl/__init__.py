"""vlmrl: fine-tune vision-language models as decision-making agents with reinforcement learning."""

__version__ = "0.1.0"
