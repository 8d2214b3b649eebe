"""What a run ran under: config hash, newest Accepted ADR, git commit, overrides, and whether the decisions check passed.

``collect`` is written into each run's run.json by train.py; ``architecture_drift`` warns at sample/resume time
when a checkpoint's saved config no longer matches the decided architecture. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import subprocess

from ddpm.decisions import check as decisions

GIT_TIMEOUT_S = 5


def _jsonable(value):
    """A JSON-serialisable copy: tuples and sets become lists, unknown objects their repr."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=repr)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _canonical(value):
    """Tuples are repr'd, so (16, 8) and [16, 8] hash differently, as they differ in config.py."""
    if isinstance(value, tuple):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def config_hash(config: dict) -> str:
    """First 12 hex characters of the sha256 of a canonical JSON dump of ``config``."""
    text = json.dumps(_canonical(dict(config)), sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _git(repo_root, *args) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo_root), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout


def git_state(repo_root) -> tuple[str | None, bool | None]:
    """(HEAD commit or None, working tree dirty or None) for the repository at ``repo_root``."""
    head = _git(repo_root, "rev-parse", "--verify", "--quiet", "HEAD")
    commit = (head.strip() or None) if head is not None else None
    status = _git(repo_root, "status", "--porcelain")
    dirty = None if status is None else bool(status.strip())
    return commit, dirty


def collect(config: dict, overrides: dict, *, repo_root: str, decisions_dir: str, config_path: str) -> dict:
    """The provenance record of a run, JSON-serialisable.

    ``config``: the constants the run used (overrides applied); ``overrides``: the ``--set`` values.
    ``decisions_ok`` ignores only a stale README index (cosmetic); every other decisions error counts and
    makes the run ``exploratory``.
    """
    try:
        errors = decisions.check(config_path, decisions_dir, index=False)
    except Exception as exc:  # a broken ADR must not stop training; it makes the run exploratory instead
        errors = [f"decisions check crashed: {type(exc).__name__}: {exc}"]
    try:
        newest = decisions.newest_accepted(decisions_dir)
    except Exception:
        newest = None
    commit, dirty = git_state(repo_root)
    overrides = _jsonable(dict(overrides or {}))
    return {
        "config_hash": config_hash(config),
        "adr": {"number": newest[0], "title": newest[1]} if newest else None,
        "git_commit": commit,
        "git_dirty": dirty,
        "overrides": overrides,
        "decisions_ok": not errors,
        "decision_errors": list(errors),
        "exploratory": bool(overrides) or bool(errors),
    }


def _normalise(value):
    """Saved configs went through JSON: compare tuples and lists alike."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def architecture_drift(saved_config: dict, current_decided: dict, keys) -> dict:
    """name -> (saved value, current value) for each of ``keys`` whose value differs (MISSING when absent).

    Tuples and lists compare equal element-wise (a checkpoint's config has been through JSON); 1 and 1.0
    compare equal too, since they build the same network.
    """
    drift = {}
    for key in keys:
        saved = saved_config.get(key, decisions.MISSING)
        current = current_decided.get(key, decisions.MISSING)
        if saved is decisions.MISSING or current is decisions.MISSING:
            if saved is not current:
                drift[key] = (saved, current)
            continue
        a, b = _normalise(saved), _normalise(current)
        if a != b or (isinstance(a, bool) != isinstance(b, bool)):
            drift[key] = (saved, current)
    return drift
