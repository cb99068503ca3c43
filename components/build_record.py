"""Model build record: what a model was built from, stored in the model's assets.extra/.

The answer to "we replaced the tokenizer and never recorded it": schema and transform graph
fingerprints, every vocabulary (size, checksum), data spans and counts, eval metrics, the
config hash, the code version and the library versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from importlib import metadata
from typing import Any

from tandem.schemas.contracts import ASSETS_EXTRA
from tandem.schemas.exit_status import BadInputError

RECORD_FILE = "tandem_build_record.json"
LIBRARIES = (
    "tensorflow", "tfx", "tensorflow-transform", "tensorflow-data-validation",
    "tensorflow-model-analysis", "tfx-bsl", "ml-metadata", "apache-beam", "tf-keras",
)


class RecordError(BadInputError):
    """A model path without a readable build record."""


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def directory_fingerprint(path: str) -> str:
    """Hash of every file's relative path and content under a directory."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(os.path.relpath(full, path).encode())
            h.update(file_sha256(full).encode())
    return h.hexdigest()[:16]


def vocabulary_entries(assets_dir: str) -> dict[str, dict[str, Any]]:
    """name -> {size, sha256} for every vocabulary file TF Transform wrote."""
    entries: dict[str, dict[str, Any]] = {}
    if not os.path.isdir(assets_dir):
        return entries
    for name in sorted(os.listdir(assets_dir)):
        path = os.path.join(assets_dir, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                size = sum(1 for line in f if line.strip())
            entries[name] = {"size": size, "sha256": file_sha256(path)[:16]}
    return entries


def code_version() -> str:
    """tandem's version, plus the git commit when running from a checkout."""
    try:
        version = metadata.version("tandem")
    except metadata.PackageNotFoundError:
        version = "unknown"
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{version}+{commit}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return version


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def record_path(model_path: str) -> str:
    """The record inside a SavedModel directory, a Trainer model artifact, or a serving
    base directory (its highest version)."""
    candidates = [
        os.path.join(model_path, ASSETS_EXTRA, RECORD_FILE),
        os.path.join(model_path, "Format-Serving", ASSETS_EXTRA, RECORD_FILE),
    ]
    if os.path.isdir(model_path):
        versions = sorted((int(v) for v in os.listdir(model_path) if v.isdigit()), reverse=True)
        if versions:
            candidates.append(os.path.join(model_path, str(versions[0]), ASSETS_EXTRA, RECORD_FILE))
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise RecordError(f"no build record under {model_path} (looked for {ASSETS_EXTRA}/{RECORD_FILE})")


def load_record(model_path: str) -> dict[str, Any]:
    path = record_path(model_path)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise RecordError(f"build record {path} is unreadable: {e}") from None


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> scalar values (what ML Metadata custom properties hold)."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def format_record(record: dict[str, Any]) -> str:
    lines = []
    checks = record.get("checks") or []
    for key, value in flatten({k: v for k, v in record.items() if k != "checks"}).items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        lines.append(f"{key:<48} {value}")
    if checks:
        lines.append("")
        lines.append("model checks (components/model_checks.py):")
        for c in checks:
            state = "passed" if c["passed"] else ("FAILED (gate)" if c.get("gate") else "FAILED")
            lines.append(f"  {c['check']:<16} {state:<14} {c['summary']}")
    return "\n".join(lines)


def diff_records(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Human sentences for what changed from model A to model B."""
    lines: list[str] = []
    va, vb = a.get("vocabularies", {}), b.get("vocabularies", {})
    for name in sorted(va.keys() | vb.keys()):
        if name not in va:
            lines.append(f"vocabulary `{name}` added: {vb[name]['size']} terms")
        elif name not in vb:
            lines.append(f"vocabulary `{name}` removed (had {va[name]['size']} terms)")
        elif va[name] != vb[name]:
            sa, sb = va[name]["size"], vb[name]["size"]
            detail = f"{sa} → {sb} terms" if sa != sb else f"same size ({sa}), different terms"
            lines.append(f"vocabulary `{name}` changed: {detail}")
    fa, fb = a.get("transform", {}).get("features", {}), b.get("transform", {}).get("features", {})
    for name in sorted(fa.keys() | fb.keys()):
        if fa.get(name) != fb.get(name):
            lines.append(
                f"preprocessing of `{name}` changed: {_brief(fa.get(name))} → {_brief(fb.get(name))}"
            )
    flat_a = flatten({k: v for k, v in a.items() if k != "checks"})
    flat_b = flatten({k: v for k, v in b.items() if k != "checks"})
    skip = ("vocabularies.", "transform.features.", "created")
    for key in sorted(flat_a.keys() | flat_b.keys()):
        if key.startswith(skip):
            continue
        if flat_a.get(key) != flat_b.get(key):
            lines.append(f"{key}: {flat_a.get(key)} → {flat_b.get(key)}")
    return lines


def _brief(spec: dict[str, Any] | None) -> str:
    if spec is None:
        return "absent"
    return ", ".join(f"{k}={v}" for k, v in sorted(spec.items()) if k != "dtype")


def write(serving_dir: str, record: dict[str, Any]) -> str:
    """Write (or rewrite) a model's build record into its assets.extra/."""
    import tensorflow as tf

    out_dir = os.path.join(serving_dir, ASSETS_EXTRA)
    tf.io.gfile.makedirs(out_dir)
    path = os.path.join(out_dir, RECORD_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True))
    return path
