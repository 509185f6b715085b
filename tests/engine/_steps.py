"""Python step archives for tests: a `.zip` of modules and an optional requirements.txt."""

from __future__ import annotations

import zipfile
from pathlib import Path

PILLOW_STEP = """
import io
import numpy as np
from PIL import Image

def process_data(input_data):
    images = [Image.open(io.BytesIO(bytes(png))).convert("RGB") for png in input_data["png"]]
    return {"width": np.array([im.width for im in images], np.int32),
            "pixels": [np.asarray(im, np.uint8).reshape(-1) for im in images]}
"""
"""Decodes PNG bytes (a ragged uint8 column) with Pillow; gives each image's pixels back."""

VERSIONS_STEP = """
import numpy as np
import pyarrow as pa

def process_data(input_data):
    n = len(input_data["x"])
    return {"numpy": np.array([np.__version__] * n), "pyarrow": np.array([pa.__version__] * n)}
"""
"""Says which numpy and pyarrow it runs with."""


def step_zip(
    path: Path, modules: dict[str, str], requirements: str | None = None, folder: str = ""
) -> Path:
    """Write a step archive: `modules` by file name, inside `folder` if given."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in modules.items():
            archive.writestr(folder + name, source)
        if requirements is not None:
            archive.writestr(folder + "requirements.txt", requirements)
    return path
