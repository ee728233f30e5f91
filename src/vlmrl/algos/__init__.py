"""Pure tensor code of the RL algorithms: advantage estimation and the PPO losses."""

from vlmrl.algos.advantages import gae, normalize
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
    "kl_to_reference",
    "minibatch_indices",
    "normalize",
    "policy_loss",
    "ppo_losses",
    "value_loss",
]
