"""facecli: batch face video processing, offline on a CPU."""

__version__ = "0.1.0"
