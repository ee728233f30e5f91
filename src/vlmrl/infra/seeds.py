"""Which seeds deal which episodes (no imports: the command line's start-up and every layer read it)."""

EVAL_SEED_BASE = 1 << 30
"""Training deals and SFT demonstrations use seeds below this, held-out evaluations seeds from it up,
so no evaluation ever plays a deal that training saw."""

VALIDATION_SEED_BASE = EVAL_SEED_BASE + (1 << 29)
"""The validation deals, above the test deals' range: presets and ablations are chosen on these, and the
test deals (from EVAL_SEED_BASE) are reported once, so no choice is tuned on what is reported."""

HELDOUT_SEEDS = {"test": EVAL_SEED_BASE, "validation": VALIDATION_SEED_BASE}
"""The first seed of each held-out range, by the name configs and commands give it."""
