"""One cv2 with the contrib modules, whichever packages brought opencv (see the Makefile)."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
from pathlib import Path

import cv2

OPENCV = "4.11.0"


def test_cv2_is_the_pinned_version_with_working_contrib_modules() -> None:
    assert cv2.__version__ == OPENCV
    # Leftover folders keep `cv2.ximgproc` importable after opencv-python overwrote the binary;
    # only the functions tell which build is loaded.
    assert hasattr(cv2.ximgproc, "thinning") and hasattr(cv2.face, "LBPHFaceRecognizer_create")


def test_every_installed_opencv_distribution_is_the_same_version() -> None:
    versions = {}
    for name in ("opencv-python", "opencv-contrib-python", "opencv-python-headless"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    assert versions.get("opencv-contrib-python") == f"{OPENCV}.86"
    assert set(versions.values()) == {f"{OPENCV}.86"}, versions


def test_the_loaded_binary_is_the_contrib_builds_file() -> None:
    record = {str(f): f for f in metadata.files("opencv-contrib-python") if str(f).startswith("cv2/cv2")}
    (name, entry), = ((n, f) for n, f in record.items() if n.endswith(".so") or n.endswith(".pyd"))
    algorithm, expected = entry.hash.mode, entry.hash.value
    on_disk = Path(entry.locate()).read_bytes()
    digest = hashlib.new(algorithm, on_disk).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == expected, f"{name} is not opencv-contrib's"
