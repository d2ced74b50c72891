# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
# On machines without a GPU this pin resolves to a CPU wheel (DEVELOPERS.md); a torch already in
# .venv (e.g. a CUDA build you installed) is left alone.
TORCH_PIN ?= torch==2.13.0

.PHONY: install demo test lint dryrun clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[test]"
	@touch $@

# A killed run leaves a Snakemake lock: demo unlocks it first when no other snakemake runs here.
# check-config first: on a YAML syntax error Snakemake names neither the file nor the line.
demo: install
	$(BIN)/cxrbs check-config config/demo.yaml
	$(BIN)/python -m cxrbs.core.stale_lock $(BIN)/snakemake --configfile config/demo.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml --rerun-incomplete --printshellcmds
	@echo
	@echo "Demo finished (synthetic phantoms, not real patients). Report: $(CURDIR)/results/report.html"

test: install
	$(BIN)/python -m pytest -ra

# snakefmt reads its settings (line length 100) from pyproject.toml.
lint: install
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakefmt --check Snakefile workflow/rules/*.smk
	$(BIN)/mypy

dryrun: install
	$(BIN)/cxrbs check-config config/demo.yaml
	$(BIN)/snakemake -n --configfile config/demo.yaml

clean-demo:
	rm -rf results resources logs .snakemake
