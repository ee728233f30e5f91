"""What every layer stands on: one-line errors, seeds, atomic files, run folders, checkpoints, metrics."""
