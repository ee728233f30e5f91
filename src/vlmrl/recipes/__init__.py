"""The jobs a user runs: PPO (`vlmrl train`), SFT (`vlmrl sft`), the SFT-then-PPO pipeline (`vlmrl bench learn`),
and the config every one of them reads."""
