"""facecli: batch face video processing, offline on a CPU.

Each stage is one function that returns a typed result; the ``facecli`` command is a thin
layer over them that writes the standardized files (see docs/formats.md).
"""

import os

__version__ = "0.1.0"

# facecli's matrices are small (a 478-point mesh); OpenBLAS's worker threads would only
# busy-wait on them and starve the ffmpeg encoder and decoders running beside (render +
# encode went from 6.2 to 4.9 ms a frame). Set before NumPy loads; a user's setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .errors import BackendUnavailable, FacecliError, InputError, NoFaceFound, OutputError, UsageError  # noqa: E402
from .formats import read_header, read_table  # noqa: E402
from .results import Classification, Faces, Landmarks, Motion, Reconstruction  # noqa: E402
from .stages.animate import animate  # noqa: E402
from .stages.classify import classify  # noqa: E402
from .stages.reenact import reenact  # noqa: E402
from .stages.detect import detect  # noqa: E402
from .stages.landmarks import landmarks  # noqa: E402
from .stages.reconstruct import reconstruct  # noqa: E402

__all__ = [
    "BackendUnavailable",
    "Classification",
    "FacecliError",
    "Faces",
    "InputError",
    "Landmarks",
    "Motion",
    "NoFaceFound",
    "OutputError",
    "Reconstruction",
    "UsageError",
    "__version__",
    "animate",
    "classify",
    "detect",
    "landmarks",
    "read_header",
    "read_table",
    "reconstruct",
    "reenact",
]
