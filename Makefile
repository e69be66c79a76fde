# polygen: two entry points, `make demo` and `make test`; both create .venv on first use.
PY := $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# A pinned torch resolves to the CPU build here; any other spec may pull a multi-GB CUDA build.
TORCH := torch==2.13.0
# Pinned too: the Triton version tested with this torch (pyproject.toml declares the tested ranges).
TRITON := triton==3.9.0
SHAPE ?= 1024x4096
PYTEST_ARGS ?=

.PHONY: demo test venv build check lint typecheck bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev,triton]' $(TORCH) $(TRITON)
	touch $@

build: venv
	$(BIN)/polygen build

check: venv
	$(BIN)/polygen check

demo: venv
	$(BIN)/polygen build
	$(BIN)/polygen list
	$(BIN)/polygen cost $$($(BIN)/polygen list | awk '$$2=="polar"{print $$1}') --shape $(SHAPE)
	$(BIN)/polygen cost $$($(BIN)/polygen list | awk '$$2=="polar"{print $$1}') --shape 2048x2048
	$(BIN)/polygen compare $$($(BIN)/polygen list | awk '$$2=="polar"{print $$1}') --shape 512x2048 --dtype float32
	$(BIN)/polygen plot $$($(BIN)/polygen list | awk '$$2=="polar"{print $$1}') -o out/polar_maps.png
	@echo "designed schedules beside the published ones (Muon^p per-step fits; Shampoo's designed roots against coupled Newton):"
	$(BIN)/polygen compare muonp_1_3 muonp_1_3_fit inv_root_4_newton inv_root_4 --shape 256x512 --dtype float32
	@echo "torch.compile(backend=\"polygen\") finds the iteration in a user's own loop:"
	$(BIN)/polygen explain docs/examples/ns5_loop.py:ns5 --shape 512x2048
	@echo "FSDP2 + polygen Muon on two processes (gloo):"
	OMP_NUM_THREADS=1 $(BIN)/python -m torch.distributed.run --standalone --nproc-per-node 2 docs/examples/dist_muon.py
	@echo "a malformed spec is refused with its file, line, field and the fix:"
	$(BIN)/polygen show docs/examples/unscaled_root.toml --stage spectral || true
	@echo "demo done: plot in out/polar_maps.png"

lint: venv
	$(BIN)/ruff check polygen tests bench

typecheck: venv
	$(BIN)/mypy polygen

# generated/ is checked inside the suite (tests/test_codegen.py runs `polygen check`'s function), where the
# tree is regenerated once and every other test reuses what the driver built.
test: venv
	$(BIN)/ruff check polygen tests bench
	$(BIN)/mypy polygen
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/bench_ns.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
