"""Pure tensor code of the RL algorithms: advantage estimation (GAE; critic-free group-relative
estimators, GRPO and GiGPO) and the PPO losses."""

from vlmrl.algos.advantages import gae, normalize
from vlmrl.algos.group_advantages import gigpo, grpo
from vlmrl.algos.ppo import (
    PPOLosses,
    kl_to_reference,
    minibatch_indices,
    policy_loss,
    ppo_losses,
    value_loss,
)

__all__ = [
    "PPOLosses",
    "gae",
    "gigpo",
    "grpo",
    "kl_to_reference",
    "minibatch_indices",
    "normalize",
    "policy_loss",
    "ppo_losses",
    "value_loss",
]
