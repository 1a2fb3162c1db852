# make demo · make test · make bench — everything installs itself into .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch 2.13.0 lies on disk on our CI machines; on a GPU box install your CUDA build first
# (or run `make TORCH=torch==2.13.0 ...` with your index) — any torch the pyproject range admits works.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export ZENML_ANALYTICS_OPT_IN ?= false
export ZENML_ENABLE_RICH_TRACEBACK ?= false

.PHONY: install demo test lint bench bench-quality clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

.zen:
	$(BIN)/zenml init

demo: $(STAMP) .zen
	$(BIN)/zenml pipeline run pipelines.ranking.cross_encoder_training -c configs/demo/cross_encoder_training.yaml
	$(BIN)/python -m pipelines.show cross_encoder_training

# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .

# Performance: ours vs the peer library, side by side; ≤ 20 min on 2 cores; rewrites BENCHMARKS.md's first part.
PERF_BENCHES ?= rerank cross_encoder_training sft orchestration data_scale gpu_mfu
bench: $(STAMP)
	@set -e; for b in $(PERF_BENCHES); do echo "== bench.perf_$$b"; $(BIN)/python -m bench.perf_$$b; done
	$(BIN)/python -m bench.write_benchmarks

# Quality on the real data in ../shared/evaldata (hours on 2 cores); results are written up by hand in BENCHMARKS.md.
bench-quality: $(STAMP)
	$(BIN)/python -m bench.cross_encoder_dl19
	$(BIN)/python -m bench.curriculum_dl19
	$(BIN)/python -m bench.ranking_distillation_dl19
	$(BIN)/python -m bench.generation_wikitext
	$(BIN)/python -m bench.lm_distillation_wikitext
	$(BIN)/python -m bench.dpo_hh_rlhf

clean:
	rm -rf .demo_data .pytest_cache
