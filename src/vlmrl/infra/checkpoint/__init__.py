"""Training checkpoints: everything a run needs to continue exactly where it stopped.

`codec` (structures as JSON + tensors), `rng` (every generator), `manifest` (what makes a folder
intact) and `store` (save, find, load, prune); this module names what the rest of vlmrl uses.

On disk, inside the run directory::

    RUN_DIR/checkpoints/
        step-40/
            adapter.safetensors     the trainer's tensors, one file per stem of `tensors`
            value_head.safetensors  (e.g. "adapter" or "trained", and "value_head")
            optimizer.json          optimizer.state_dict() with each tensor replaced by {"__tensor__": key}
            optimizer.safetensors   those tensors (exp_avg, exp_avg_sq, step, ...), keys like "state.0.exp_avg"
            scheduler.json          lr-scheduler state_dict, same encoding (+ scheduler.safetensors if it has tensors)
            rng.json                python `random`, numpy global, named numpy / python generators
            rng.safetensors         torch CPU RNG, CUDA RNGs (when CUDA is in use), named torch.Generator states
            state.json              written LAST: format, version, step, the weight stems, a manifest
                                    {file: {bytes, sha256}} of every other file, the trainer's own `state`,
                                    and `digest`, the sha256 of all of that (so state.json is checked too)
        step-50/ ...
        .tmp-step-60-1a2b3c4d/      a save in progress, or one a crash interrupted: ignored, removed by the next save

A save writes into a `.tmp-*` folder, fsyncs every file, writes state.json last, then renames
the folder to `step-N` (one atomic rename), so a `step-N` folder is either complete or absent.
A checkpoint counts as intact iff state.json parses, matches its own digest, names the step of its
folder (a copied or renamed `step-N` is not taken at its name), every file has the size and sha256
its manifest records, and the trainer's `check` (a schema of its state) accepts the state;
`latest_checkpoint` skips the others, so a resume falls back to the newest intact checkpoint and
says which one it skipped and why.

Why JSON + safetensors: loading never unpickles anything (no `torch.load`, no `pickle`), so a
checkpoint from elsewhere cannot run code. Python structures that JSON cannot say directly are
tagged: {"__tuple__": [...]}, {"__dict__": [[key, value], ...]} (non-string keys, e.g. the
optimizer's integer parameter ids), {"__ndarray__": [...], "dtype": ...} (numpy RNG keys), and
{"__tensor__": key} (the tensor lives in the matching .safetensors file). Decoding gives back the
same types, so `optimizer.load_state_dict` sees what `state_dict()` gave, `step` tensors included.

LambdaLR stores no lambdas (they are code): the trainer rebuilds its scheduler from the config
and `load_checkpoint` restores the counters (last_epoch, base_lrs, _last_lr, ...) into it.
"""

from vlmrl.infra.checkpoint.codec import decode, encode
from vlmrl.infra.checkpoint.manifest import TMP_PREFIX, StateCheck
from vlmrl.infra.checkpoint.rng import capture_rng, restore_rng
from vlmrl.infra.checkpoint.store import (
    CheckpointWarning,
    LoadedCheckpoint,
    checkpoints_dir,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    resume_checkpoint,
    save_checkpoint,
)

__all__ = [
    "TMP_PREFIX",
    "CheckpointWarning",
    "LoadedCheckpoint",
    "StateCheck",
    "capture_rng",
    "checkpoints_dir",
    "decode",
    "encode",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_weights",
    "restore_rng",
    "resume_checkpoint",
    "save_checkpoint",
]
