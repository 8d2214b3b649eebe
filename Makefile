# The front door. `make help` lists every target.
PY      := .venv/bin/python
STAMP   := .venv/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
BENCH_STAMP := .venv/.bench-$(shell cat requirements-bench.txt 2>/dev/null | cksum | cut -d' ' -f1)

# The prompt travels to sample.py through the environment, unexpanded, so that quotes, $, backticks and
# newlines reach Python verbatim (make would otherwise expand $ and the shell would interpret the rest).
# (A command-line PROMPT= overrides any assignment to PROMPT itself, hence the second name.)
export SAMPLE_PROMPT := $(value PROMPT)

.DEFAULT_GOAL := help
.PHONY: help setup train sample test lint decisions adr runs eval export bench profile tensorboard clean digits sweep ladder compare

help: ## list the targets
	@echo "make train                 train the default model (creates .venv on first use)"
	@echo "make train NPROC=N         the same, data-parallel in N processes (one per GPU; gloo on CPU) under torchrun"
	@echo "make sample PROMPT=\"...\"   PNG grid from the newest checkpoint; also N= GUIDANCE= STEPS= SAMPLER= ETA= SEED= CKPT= OUT="
	@echo "make test                  the test suite (CPU, about 7 minutes on 2 cores)"
	@echo "make lint                  ruff: syntax errors, undefined and unused names"
	@echo "make decisions             regenerate the ADR index and check config.py against the accepted ADRs"
	@echo "make adr TITLE=\"...\"       write the next ADR, filled with config.py's undecided changes; SUPERSEDES=N"
	@echo "make adr TITLE=\"...\" FROM=runs/<sweep>   the ADR from a sweep's best point, its table and command"
	@echo "make sweep SPEC=decisions/sweeps/lr.toml    random search, seeds per point → runs/<name>/results.md"
	@echo "make ladder SPEC=decisions/ladders/width.toml  sizes × seeds: loss and accuracy vs params/FLOPs, verdict"
	@echo "make compare SWEEPS=\"runs/a runs/b\"  finished sweeps side by side: each probe attribute, images to 0.9"
	@echo "make runs                  table of training runs, newest first"
	@echo "make eval                  probe-classifier accuracy, Fréchet distance, diversity, guidance sweep; CKPT= N= SAMPLER= STEPS= ETA= ARGS=--no-ema"
	@echo "make export CKPT=...       EMA weights as .safetensors + .json beside it (sample, eval, --init-from read it); OUT="
	@echo "make bench                 training and sampling speed against a matched diffusers UNet → runs/bench.md"
	@echo "make profile               where a training and a sampling step spend their time → runs/profile.md"
	@echo "make tensorboard           TensorBoard on runs/"
	@echo "make digits                1,797 real handwritten digits as a captioned folder → runs/data/digits (scikit-learn)"
	@echo "make setup                 only create .venv with the pinned dependencies"
	@echo "make clean                 delete runs/ and caches (keeps .venv)"
	@echo "Options: make train ARGS=\"--set LEARNING_RATE=2e-4 --resume\"; fine-tune: ARGS=\"--init-from model.safetensors\"   (python train.py --help for all)"

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -c "import torch, torchvision, open_clip; assert torch.__version__.startswith('2.14.1'), torch.__version__"
	rm -f .venv/.installed-* && touch $@

setup: $(STAMP) ## create .venv

# NPROC=N: N data-parallel processes on this machine under torchrun (ADR 0017); several machines: see README.
train: $(STAMP)
	$(if $(NPROC),$(PY) -m torch.distributed.run --standalone --nproc-per-node $(NPROC),$(PY)) train.py $(ARGS)

sample: $(STAMP)
	$(if $(filter undefined,$(origin PROMPT)),,PROMPT="$$SAMPLE_PROMPT") $(PY) sample.py $(if $(N),--n $(N)) $(if $(GUIDANCE),--guidance $(GUIDANCE)) $(if $(STEPS),--steps $(STEPS)) \
		$(if $(SAMPLER),--sampler $(SAMPLER)) $(if $(ETA),--eta $(ETA)) $(if $(SEED),--seed $(SEED)) $(if $(CKPT),--ckpt "$(CKPT)") $(if $(OUT),--out "$(OUT)") $(ARGS)

test: $(BENCH_STAMP)  # the bench's own tests need diffusers
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check --select E9,F --exclude .venv .

decisions: $(STAMP)
	$(PY) -m ddpm.decisions.check index
	$(PY) -m ddpm.decisions.check check

adr: $(STAMP)
	@test -n "$(TITLE)" || { echo 'make adr needs a title: make adr TITLE="Raise the learning rate"'; exit 2; }
	$(PY) -m ddpm.decisions.check new --title "$(TITLE)" $(if $(SUPERSEDES),--supersedes $(SUPERSEDES)) $(if $(FROM),--from "$(FROM)")

sweep: $(STAMP)
	@test -n "$(SPEC)" || { echo 'make sweep needs a spec: make sweep SPEC=decisions/sweeps/lr.toml'; exit 2; }
	$(PY) -m ddpm.experiments.sweep "$(SPEC)" $(ARGS)

ladder: $(STAMP)
	@test -n "$(SPEC)" || { echo 'make ladder needs a spec: make ladder SPEC=decisions/ladders/width.toml'; exit 2; }
	$(PY) -m ddpm.experiments.ladder "$(SPEC)" $(ARGS)

compare: $(STAMP)
	@test -n "$(SWEEPS)" || { echo 'make compare needs sweep folders: make compare SWEEPS="runs/default-1500 runs/pooled-text"'; exit 2; }
	$(PY) -m ddpm.experiments.compare $(SWEEPS) $(ARGS)

runs: $(STAMP)
	$(PY) -m ddpm.decisions.runs

eval: $(STAMP)
	$(PY) -m ddpm.measure.evaluate $(if $(CKPT),--ckpt "$(CKPT)") $(if $(N),--n $(N)) $(if $(GUIDANCE),--guidance $(GUIDANCE)) \
		$(if $(STEPS),--steps $(STEPS)) $(if $(SAMPLER),--sampler $(SAMPLER)) $(if $(ETA),--eta $(ETA)) $(ARGS)

export: $(STAMP)
	@test -n "$(CKPT)" || { echo 'make export needs a checkpoint: make export CKPT=runs/<run>/checkpoints/<file>.pt [OUT=model.safetensors]'; exit 2; }
	$(PY) -m ddpm.run.export --ckpt "$(CKPT)" $(if $(OUT),--out "$(OUT)")

digits: $(STAMP) requirements-data.txt  # then: make train ARGS="--set DATASET=folder --set DATA_DIR=runs/data/digits"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-data.txt
	$(PY) -m ddpm.data.make_digits_folder --out runs/data/digits

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	rm -f .venv/.bench-* && touch $@

bench: $(BENCH_STAMP)
	$(PY) -m ddpm.measure.bench $(ARGS)

profile: $(STAMP)
	$(PY) -m ddpm.measure.profiling $(ARGS)

tensorboard: $(STAMP)
	$(PY) -m tensorboard.main --logdir runs

clean:
	rm -rf runs .pytest_cache
