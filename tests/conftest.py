"""Shared test set-up: offline hub, a fresh store per test, tiny images.

Area-specific helpers live in tests/<area>_util.py modules; fixtures that
several areas need are defined here.
"""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))  # tests/<area>_util.py importable


def png_bytes(width: int = 32, height: int = 24, color=(200, 30, 30)) -> bytes:
    """A tiny real PNG (a few hundred bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def store(tmp_path):
    from builders.store import Store

    return Store(tmp_path / "store")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """The tiny random "test" Qwen2.5-VL (~0.2M parameters), built once per session."""
    from training.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", size="test")


@pytest.fixture(scope="session")
def right_model(tmp_path_factory):
    """The tiny model trained to answer right on a share of locate_red tasks (tests/right_model.py), once a session."""
    from right_model import train_right_model

    return train_right_model(tmp_path_factory.mktemp("right"))
