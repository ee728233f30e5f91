"""Which seeds deal which episodes (no imports: the command line's start-up and every layer read it)."""

EVAL_SEED_BASE = 1 << 30
"""Training deals and SFT demonstrations use seeds below this, held-out evaluations seeds from it up,
so no evaluation ever plays a deal that training saw."""
