# facecli: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT := examples/out

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

# One resolver pass for everything: a second pip call would upgrade numpy to 2.x and break mediapipe.
# torch==2.13.0 is the CPU build on this machine's disk; without the pin face-alignment's plain
# `torch` would pull a CUDA build of several GB.
# insightface and face-alignment bring opencv-python, mediapipe opencv-contrib-python: the same
# version, but different binaries in one cv2 folder, and whichever pip unpacks last wins. The
# last line puts the contrib build's files back (--no-deps: it cannot touch numpy or protobuf).
$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 12), "facecli needs Python 3.10-3.12"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0 -e '.[test]'
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps opencv-contrib-python==4.11.0.86
	touch $(STAMP)

demo: install
	mkdir -p $(DEMO_OUT)
	$(BIN)/facecli animate examples/portrait.png examples/speech.wav -o $(DEMO_OUT)/portrait.mp4
	$(BIN)/facecli detect examples/Megamind.avi examples/portrait.png -o $(DEMO_OUT)
	$(BIN)/facecli landmarks $(DEMO_OUT)/Megamind.faces.parquet -o $(DEMO_OUT) --preview $(DEMO_OUT)/Megamind.landmarks.preview.mp4
	$(BIN)/facecli landmarks examples/portrait.png -o $(DEMO_OUT) --format csv --preview $(DEMO_OUT)/portrait.landmarks.preview.png
	@echo "demo outputs in $(DEMO_OUT)/ (the talking portrait: $(DEMO_OUT)/portrait.mp4)"

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

bench: install
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/detect_bench.py
	$(BIN)/python benchmarks/portraits.py
	$(BIN)/python benchmarks/stabilize_bench.py
	$(BIN)/python benchmarks/reconstruct_bench.py
	$(BIN)/python benchmarks/classify_bench.py
	$(BIN)/python benchmarks/diffusion_bench.py
	$(BIN)/python benchmarks/ray_bench.py
	$(BIN)/python benchmarks/backends_bench.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
