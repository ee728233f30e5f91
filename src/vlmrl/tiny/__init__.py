"""The embedded tiny VLMs: built offline from a family's architecture with random weights, a BPE
tokenizer trained on the games' own text, and a vision tower pretrained to read the games' images.
They sit above `vlmrl.policy` (they are models it loads, like any other folder), never inside it.
"""

from vlmrl.tiny.build import SIZES, build_tiny_model, demo_model, model_or_demo

__all__ = ["SIZES", "build_tiny_model", "demo_model", "model_or_demo"]
