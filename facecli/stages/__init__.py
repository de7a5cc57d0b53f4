"""One module per pipeline stage; each exposes a Python function and a file-to-file runner."""
