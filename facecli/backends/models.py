"""Where the optional backends find their weights, and the one command that downloads them.

Weights are read from the model directory only: ``--model-dir DIR``, else ``$FACECLI_MODELS``,
else ``~/.cache/facecli/models``. Nothing is downloaded while facecli detects or fits faces;
``facecli models download NAME`` is the only step that reaches the network, through the
package's own downloader. The layout below is documented in docs/backends.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendUnavailable, FacecliError, UsageError
from . import backend_class

ENV_VAR = "FACECLI_MODELS"
DEFAULT_DIR = Path("~/.cache/facecli/models")


@dataclass(frozen=True)
class Weights:
    """One file a backend needs: the names it may have, preferred first (several releases of a
    package named the same network differently)."""

    names: tuple[str, ...]
    what: str
    url_key: str = ""  # face-alignment's key for it in face_alignment.api.models_urls

    @property
    def name(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class Pack:
    """Files one ``facecli models download NAME`` fetches into one folder of the model directory."""

    name: str
    module: str  # the Python package whose downloader fetches the pack
    extra: str  # the facecli extra that installs it
    folder: str  # relative to the model directory
    files: tuple[Weights, ...]


INSIGHTFACE_DETECTOR = Weights(("det_10g.onnx",), "SCRFD-10G face detector")
INSIGHTFACE_LANDMARKS = Weights(("1k3d68.onnx",), "68-point 3D landmarks")
INSIGHTFACE_LANDMARKS_106 = Weights(("2d106det.onnx",), "106-point 2D landmarks")
INSIGHTFACE_EMBEDDING = Weights(("w600k_r50.onnx",), "ArcFace R50 identity embedding (WebFace600K)")
# face-alignment 1.5 (and 1.0-1.1) ship PyTorch state dicts; 1.4 and 1.2-1.3 TorchScript archives.
FAN_2D = Weights(("2DFAN4-11f355bf06.pth.tar", "2DFAN4_1.6-c827573f02.zip", "2DFAN4-cd938726ad.zip"),
                 "2D-FAN-4", "2DFAN-4")
FAN_3D = Weights(("3DFAN4-7835d9f11d.pth.tar", "3DFAN4_1.6-ec5cf40a1d.zip", "3DFAN4-4a694010b9.zip"),
                 "3D-FAN-4", "3DFAN-4")
FAN_DEPTH = Weights(("depth-2a464da4ea.pth.tar", "depth_1.6-2aa3f18772.zip", "depth-6c4283c0e0.zip"),
                    "depth network of 3D-FAN", "depth")

PACKS = {
    "buffalo_l": Pack("buffalo_l", "insightface", "insightface", "insightface/models/buffalo_l",
                      (INSIGHTFACE_DETECTOR, INSIGHTFACE_LANDMARKS, INSIGHTFACE_LANDMARKS_106, INSIGHTFACE_EMBEDDING)),
    "fan": Pack("fan", "face_alignment", "fan", "fan/checkpoints", (FAN_2D,)),
    "fan3d": Pack("fan3d", "face_alignment", "fan", "fan/checkpoints", (FAN_3D, FAN_DEPTH)),
}

# sha256 of the official files. Neither package publishes checksums: these are the values that
# independent projects pin (Dockerfiles, model registries; buffalo_l.zip's own hash is pinned by
# ten or more) and, for FAN, agree with the hash prefix in each name. Sources: docs/backends.md.
PUBLISHED_SHA256 = {
    "det_10g.onnx": "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
    "1k3d68.onnx": "df5c06b8a0c12e422b2ed8947b8869faa4105387f199c477af038aa01f9a45cc",
    "2d106det.onnx": "f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf",
    "w600k_r50.onnx": "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
    "2DFAN4-11f355bf06.pth.tar": "11f355bf0693120222f5955ce3f9dc8fb5763ebb30a47d7906e509490d32e4aa",
    "2DFAN4-cd938726ad.zip": "cd938726adb1f15f361263cce2db9cb820c42585fa8796ec72ce19107f369a46",
    "3DFAN4-4a694010b9.zip": "4a694010b93140609b64a6ea734afc0ee80a4798394740281b0c5bea0ebef1d9",
    "depth-6c4283c0e0.zip": "6c4283c0e0c5361854620610c2eba27f46a6ace1bfddb51dcc25264a94b038dc",
}

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch hub's convention: the sha256's first digits


def model_dir() -> Path:
    """The model directory in force: ``$FACECLI_MODELS`` (``--model-dir`` sets it) or the default."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR).expanduser()


def use_model_dir(path: Path | None) -> None:
    """``--model-dir``: set for this process and the batch workers it spawns (they inherit it)."""
    if path is not None:
        os.environ[ENV_VAR] = str(Path(path).expanduser().resolve())


def pack_dir(pack: str) -> Path:
    return model_dir() / PACKS[pack].folder


def locate(pack: str, weights: Weights) -> Path | None:
    """The first of the file's accepted names present in the pack's folder, or None."""
    folder = pack_dir(pack)
    return next((folder / n for n in weights.names if (folder / n).is_file()), None)


def download_command(pack: str) -> str:
    """The exact command that fetches a pack into the model directory in force."""
    where = "" if model_dir() == DEFAULT_DIR.expanduser() else f" --model-dir {model_dir()}"
    return f"facecli models download {pack}{where}"


def problem(pack: str, *needed: Weights) -> str | None:
    """Why a backend reading ``needed`` from ``pack`` cannot run here (one line), or None."""
    spec = PACKS[pack]
    if importlib.util.find_spec(spec.module) is None:
        return f"the {spec.module} package is not installed; pip install 'facecli[{spec.extra}]'"
    for weights in needed:
        if locate(pack, weights) is None:
            return f"missing {weights.name} in {pack_dir(pack)}; get it with: {download_command(pack)}"
    return None


def require(stage: str, name: str) -> None:
    """Fail before a batch starts (one line, exit 2) when a backend cannot run here, rather
    than once per file."""
    cls = backend_class(stage, name)
    reason = cls.problem()
    if reason:
        raise BackendUnavailable(f"{stage} backend {name!r} cannot run: {reason}")


@dataclass(frozen=True)
class FileStatus:
    pack: str
    weights: Weights
    path: Path | None  # where it was found, or None
    checksum: str  # "sha256 ..." of a found file, and whether it matches the published one or its name


def status(hash_files: bool = True) -> list[FileStatus]:
    """Every file of every pack: where it is and its sha256 (``facecli models list``)."""
    rows = []
    for pack in PACKS.values():
        for weights in pack.files:
            path = locate(pack.name, weights)
            rows.append(FileStatus(pack.name, weights, path, _checksum(path) if path and hash_files else ""))
    return rows


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _agrees(path: Path, sha256: str) -> bool | None:
    """Whether a file's sha256 is the published one, else the prefix in its name (None: neither known)."""
    if path.name in PUBLISHED_SHA256:
        return sha256 == PUBLISHED_SHA256[path.name]
    prefix = _HASH_IN_NAME.search(path.name)
    return sha256.startswith(prefix.group(1)) if prefix else None


def _checksum(path: Path) -> str:
    sha256 = _sha256(path)
    against = "the published one" if path.name in PUBLISHED_SHA256 else "its name"
    agrees = _agrees(path, sha256)
    verdict = "" if agrees is None else f" (matches {against})" if agrees else f" (DOES NOT match {against})"
    return f"sha256 {sha256}{verdict}"


def download(name: str) -> Path:
    """Fetch a pack with its package's own downloader into the model directory; returns the folder."""
    if name not in PACKS:
        raise UsageError(f"unknown model pack {name!r}; choose one of: {', '.join(PACKS)}")
    pack = PACKS[name]
    if importlib.util.find_spec(pack.module) is None:
        raise BackendUnavailable(f"the {pack.module} package is not installed; pip install 'facecli[{pack.extra}]'")
    folder = pack_dir(name)
    try:
        if pack.module == "insightface":
            _download_insightface(name)
        else:
            _download_fan(pack, folder)
    except Exception as exc:  # noqa: BLE001 - requests, urllib and zipfile each raise their own
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise FacecliError(f"could not download {name} ({detail}); copy its files into {folder} by hand "
                           "(see docs/backends.md)") from exc
    found = [locate(name, w) for w in pack.files]
    missing = [w.name for w, path in zip(pack.files, found) if path is None]
    if missing:
        raise FacecliError(f"the {name} download did not contain {', '.join(missing)}; see docs/backends.md", folder)
    wrong = [path.name for path in found if _agrees(path, _sha256(path)) is False]
    if wrong:
        raise FacecliError(f"{', '.join(wrong)} in the {name} download does not match its published sha256 "
                           "(docs/backends.md); delete it and download again, or copy the official file by hand",
                           folder)
    return folder


def _download_insightface(name: str) -> None:
    from insightface.utils import storage

    # storage.download(sub_dir, name, root) unpacks <root>/<sub_dir>/<name>.zip into <root>/<sub_dir>/<name>/;
    # its progress goes to stderr, so stdout holds only where the pack went.
    with contextlib.redirect_stdout(sys.stderr):
        storage.download("models", name, force=True, root=str(model_dir() / "insightface"))


def _download_fan(pack: Pack, folder: Path) -> None:
    from face_alignment import api
    from face_alignment.utils import load_file_from_url

    # The installed face-alignment's own URLs: its file names are the first of each Weights.names
    # (1.5) or a later one (1.4); load_file_from_url saves into a torch hub checkpoints folder.
    urls = getattr(api, "models_urls", {})
    urls = urls.get("1.6", urls)  # face-alignment 1.4 keys its URLs by torch version
    for weights in pack.files:
        load_file_from_url(urls[weights.url_key], model_dir=str(folder))
