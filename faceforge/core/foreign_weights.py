"""Weights written by other projects, loaded into faceforge backbones without user Python.

Published face models come as state dicts in many wrappings and namings: insightface's bare
``backbone.pth``, ``{'epoch', 'net_state_dict'}`` training checkpoints, PyTorch Lightning's
``state_dict`` with ``model.`` prefixes, ``module.`` prefixes from DataParallel, and key
names of their own. :func:`read_state_dict` unwraps the file; :func:`match_state_dict` maps
its tensors onto a backbone's, in this order:

1. a key map the user wrote (:func:`read_key_map`), applied first when given, then the
   renaming of a published layout (:mod:`~faceforge.core.weight_adapters`);
2. by name: exact, or under a wrapper prefix such as ``model.`` or ``backbone.`` (the
   prefix that wraps the most names wins, so ``conv1.weight`` is ``model.conv1.weight``
   rather than ``model.layer1.0.conv1.weight``); a name found under prefixes that wrap as
   many names is refused as ambiguous;
3. the keys left over on both sides by order, when they pair up one to one with equal
   shapes and equal leaf names (``weight``, ``bias``, ``running_mean``...): a network
   written with other names but the same layers in the same order.

A linear layer's (out, in) weight and a 1x1 convolution's (out, in, 1, 1) are the same map
and fit each other (TreB1eN's MobileFaceNet ends in a linear layer where faceforge's has a
1x1 convolution).

BatchNorm's ``num_batches_tracked`` counters (absent from files saved before PyTorch 0.4.1)
take no part in matching and default to zero. Anything left unmatched is a
:class:`~faceforge.errors.CheckpointError` listing the first missing, unexpected and
wrongly shaped keys.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from faceforge.core.safe_load import load_with_placeholders
from faceforge.errors import CheckpointError, first_line

#: where training scripts keep the network's state dict, looked for in this order
CONTAINER_KEYS = (
    "state_dict",
    "model_state_dict",
    "net_state_dict",
    "backbone_state_dict",
    "model",
    "backbone",
    "net",
    "network",
)
#: prefixes of wrappers (DataParallel / DDP, torch.compile) removed from every key
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: BatchNorm step counters: irrelevant at inference, missing in old files
COUNTER = "num_batches_tracked"
#: keys named per kind of problem in a mismatch error
LISTED = 3
#: the numbers in a key (block and layer indices), compared to check the file's order
_DIGITS = re.compile(r"\d+")
#: a key map line's target that drops the source key (or prefix)
DROP = "-"


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a weights file (any of :data:`CONTAINER_KEYS` unwrapped, wrapper
    prefixes removed), read with the safe unpickler; Python objects kept beside them (a
    training script's hyper-parameters, a numpy metric) are left out, never imported, with
    one warning naming them."""
    path = Path(path)
    value, objects = load_with_placeholders(path)
    state = _unwrap(value)
    if state is None and objects:  # a pickled model, alone or in a dict ({"model": model})
        raise CheckpointError(
            f"{path}: holds no state dict of tensors, only Python objects that are never "
            f"imported ({', '.join(objects[:LISTED])}); a whole pickled model "
            "(torch.save(model)) cannot be read safely: save model.state_dict() instead"
        )
    if state is None:
        found = ", ".join(map(str, list(value)[:8])) if isinstance(value, dict) else type(value)
        raise CheckpointError(
            f"{path}: expected a state dict of tensors, directly or under one of "
            f"{', '.join(CONTAINER_KEYS)}; found {found}"
        )
    if objects:
        warnings.warn(
            f"{path}: read its tensors and left out the Python objects beside them, never "
            f"imported: {', '.join(objects[:LISTED])}",
            stacklevel=2,
        )
    return {_unwrapped_name(key): tensor for key, tensor in state.items()}


def _unwrap(value: Any, depth: int = 0) -> dict[str, Tensor] | None:
    """The state dict inside ``value``: itself when every value is a tensor, else the first
    container key holding one (a faceforge checkpoint's ``backbone`` included)."""
    if not isinstance(value, dict) or depth > len(CONTAINER_KEYS):
        return None
    if value and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in value.items()):
        return value
    for key in CONTAINER_KEYS:
        found = _unwrap(value.get(key), depth + 1)
        if found is not None:
            return found
    return None


def _unwrapped_name(key: str) -> str:
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def read_key_map(path: str | Path) -> dict[str, str]:
    """Renames from a key map file: one ``SOURCE TARGET`` pair per line (``#`` comments).

    A SOURCE ending in ``.`` renames every key under that prefix (``body.`` -> ``layer``
    style), a TARGET of ``-`` drops the key or prefix (a classifier head the backbone has
    no use for). Raises CheckpointError naming the line when it is malformed.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read the key map ({first_line(exc)})") from None
    rules: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2 or fields[0] in rules:
            problem = "repeats a source" if len(fields) == 2 else "expected 'SOURCE TARGET'"
            raise CheckpointError(f"{path}:{number}: {problem}, got {line.strip()!r}")
        rules[fields[0]] = fields[1]
    return rules


def apply_key_map(state: Mapping[str, Tensor], rules: Mapping[str, str]) -> dict[str, Tensor]:
    """``state`` with :func:`read_key_map` rules applied (exact keys before prefixes, the
    longest prefix first)."""
    prefixes = sorted((k for k in rules if k.endswith(".")), key=len, reverse=True)
    renamed: dict[str, Tensor] = {}
    for key, tensor in state.items():
        new = rules.get(key)
        if new is None:
            prefix = next((p for p in prefixes if key.startswith(p)), None)
            if prefix is not None:
                new = DROP if rules[prefix] == DROP else rules[prefix] + key[len(prefix) :]
        if new != DROP:
            renamed[key if new is None else new] = tensor
    return renamed


def match_state_dict(
    source: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    what: str,
    *,
    drop: Iterable[str] = (),
) -> dict[str, Tensor]:
    """``source``'s tensors under ``target``'s names (see the module docs); keys starting
    with a ``drop`` prefix are left out first. ``what`` starts every error message."""
    drop = tuple(drop)
    kept = {k: v for k, v in source.items() if not k.startswith(drop)}
    source = {k: v for k, v in kept.items() if _counted(k)}
    wanted = [k for k in target if _counted(k)]
    by_name = _match_names(wanted, source, what)
    wrong = [(t, s) for t, s in by_name.items() if not _fits(source[s], target[t])]
    used = set(by_name.values())
    missing = [k for k in wanted if k not in by_name]
    unexpected = [k for k in source if k not in used]
    if not wrong and missing and _pairs_in_order(missing, unexpected, source, target):
        _refuse_disorder(unexpected, what)
        by_name.update(zip(missing, unexpected, strict=True))
        missing = unexpected = []
    if wrong or missing or unexpected:
        if not wrong and len(missing) == len(unexpected):
            pairs = zip(missing, unexpected, strict=True)
            wrong = [(t, s) for t, s in pairs if not _fits(source[s], target[t])]
        raise CheckpointError(
            f"{what}: weights do not fit: "
            + mismatched_keys(missing, unexpected, wrong, source, target)
            + " (check --arch, --embedding-size and --input-size, or rename keys with "
            "--key-map FILE)"
        )
    matched = {t: _shaped(source[s], target[t]) for t, s in by_name.items()}
    modules = {t.rpartition(".")[0]: s.rpartition(".")[0] for t, s in by_name.items()}
    for key, tensor in target.items():  # BatchNorm counters: the matched layer's, else zero
        if not _counted(key):
            module = modules.get(key.rpartition(".")[0])
            counter = kept.get(f"{module}.{COUNTER}") if module is not None else None
            matched[key] = counter if counter is not None else torch.zeros_like(tensor)
    return matched


def _fits(tensor: Tensor, like: Tensor) -> bool:
    """Whether ``tensor`` can stand for ``like``: equal shapes, or a linear weight and a
    1x1 convolution weight of the same sizes."""
    if tensor.shape == like.shape:
        return True
    short, long = sorted((tuple(tensor.shape), tuple(like.shape)), key=len)
    return len(short) == 2 and long == (*short, 1, 1)


def _shaped(tensor: Tensor, like: Tensor) -> Tensor:
    return tensor if tensor.shape == like.shape else tensor.reshape(like.shape)


def _counted(key: str) -> bool:
    return not key.endswith(COUNTER)


def weight_count(state: Mapping[str, Tensor]) -> int:
    """Tensors :func:`match_state_dict` pairs up (BatchNorm counters are optional in a
    weights file), so two state dicts whose counts differ cannot match."""
    return sum(map(_counted, state))


def _match_names(wanted: list[str], source: Mapping[str, Tensor], what: str) -> dict[str, str]:
    """target key -> source key: by exact name, else under a wrapper prefix (``model.``,
    ``backbone.``): of the source keys ending in ``.<name>``, the one whose prefix wraps the
    most names (so ``conv1.weight`` is ``model.conv1.weight``, not
    ``model.layer1.0.conv1.weight``); prefixes that wrap as many are ambiguous, and a source
    key two names would take goes to the one under the prefix that wraps more."""
    exact = {key: key for key in wanted if key in source}
    free = [name for name in source if name not in exact]  # an exact match is taken
    prefixes = {
        key: [name[: -len(key)] for name in free if name.endswith("." + key)]
        for key in wanted
        if key not in exact
    }
    wraps = Counter(prefix for found in prefixes.values() for prefix in found)
    claims: dict[str, list[tuple[int, str]]] = {}  # source key -> (prefix's wraps, target)
    for key, found in prefixes.items():
        most = max((wraps[prefix] for prefix in found), default=0)
        best = [prefix for prefix in found if wraps[prefix] == most]
        if len(best) > 1:
            candidates = ", ".join(prefix + key for prefix in best[:LISTED])
            raise CheckpointError(
                f"{what}: {key} is ambiguous: it matches {candidates}; "
                "say which with --key-map FILE (lines of 'SOURCE TARGET')"
            )
        if best and best[0] + key not in exact:
            claims.setdefault(best[0] + key, []).append((most, key))
    wrapped = {}
    for name, claimants in claims.items():  # a key two names would take: the likelier prefix
        ranked = sorted(claimants, reverse=True)
        if len(ranked) == 1 or ranked[0][0] > ranked[1][0]:
            wrapped[ranked[0][1]] = name
    return exact | wrapped


def _leaf(key: str) -> str:
    return key.rpartition(".")[2]


def _pairs_in_order(
    missing: list[str],
    unexpected: list[str],
    source: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
) -> bool:
    """Whether the leftover keys pair up one to one in order, shape and leaf name alike."""
    if len(missing) != len(unexpected):
        return False
    return all(
        _fits(source[s], target[t]) and _leaf(s) == _leaf(t)
        for t, s in zip(missing, unexpected, strict=True)
    )


def _refuse_disorder(keys: list[str], what: str) -> None:
    """CheckpointError when ``keys`` (paired with the network's by order) were sorted as
    text: among keys alike but for their numbers, ``stage3.unit19.conv1.weight`` listed
    before ``stage3.unit2.conv1.weight`` (text order, not numeric), where same-shaped blocks
    would be loaded into each other's places. A network may define layers out of numeric
    order (MobileFaceNet's ``linear7`` before ``linear1``): only the text order is refused."""
    last: dict[str, tuple[tuple[int, ...], str]] = {}
    for key in keys:
        pattern = _DIGITS.sub("#", key)
        numbers = tuple(int(n) for n in _DIGITS.findall(key))
        before = last.get(pattern)
        if before is not None and before[0] > numbers and before[1] < key:
            raise CheckpointError(
                f"{what}: the file lists {before[1]} before {key}, not in the network's "
                "order (sorted as text?), so the order of its layers cannot say which is which; "
                "name them with --key-map FILE (lines of 'SOURCE TARGET')"
            )
        last[pattern] = (numbers, key)


def load_exactly(module: torch.nn.Module, state: Mapping[str, Tensor], where: str) -> None:
    """``module.load_state_dict(state, strict=True)``, or one CheckpointError line naming the
    first missing, unexpected and wrongly shaped keys (PyTorch's message runs to pages)."""
    target = module.state_dict()
    missing = [key for key in target if key not in state]
    unexpected = [key for key in state if key not in target]
    wrong = [(k, k) for k in target if k in state and state[k].shape != target[k].shape]
    if missing or unexpected or wrong:
        found = mismatched_keys(missing, unexpected, wrong, state, target)
        raise CheckpointError(f"{where}: weights do not fit {type(module).__name__}: {found}")
    module.load_state_dict(state, strict=True)


def mismatched_keys(
    missing: list[str],
    unexpected: list[str],
    wrong: list[tuple[str, str]],
    source: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
) -> str:
    """The first missing, unexpected and wrongly shaped (``(target, source)``) keys."""
    parts = []
    if wrong:
        shown = [
            f"{s} {tuple(source[s].shape)} for {t} {tuple(target[t].shape)}"
            for t, s in wrong[:LISTED]
        ]
        parts.append(f"{len(wrong)} wrongly shaped ({'; '.join(shown)})")
    if missing:
        parts.append(f"{len(missing)} missing ({', '.join(missing[:LISTED])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:LISTED])})")
    return "; ".join(parts)
