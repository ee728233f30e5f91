"""Settings of a PPO run small enough for a test: seconds on the `test` tiny model."""

TINY = [
    "num_envs=2",
    "steps_per_update=4",
    "max_new_tokens=12",
    "ppo_epochs=2",
    "minibatch_size=2",
    "grad_accum=2",
    "eval_every=1",
    "eval_episodes=2",
    "checkpoint_every=1",
    "lora=true",
    "lora_rank=4",
    "lora_alpha=8",
    "lr=1e-3",
    "max_grad_norm=1.0",
    "tensorboard=false",
]
