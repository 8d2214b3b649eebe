# The front door. `make help` lists every target.
PY      := .venv/bin/python
STAMP   := .venv/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
BENCH_STAMP := .venv/.bench-$(shell cat requirements-bench.txt 2>/dev/null | cksum | cut -d' ' -f1)

# What a user sets on the command line (PROMPT, CKPT, OUT, ARGS, ...) is data, never code. make hands each one to
# the recipes as the environment variable DDPM_<NAME>, its text taken unexpanded ($(value)), and the recipes quote
# it ("$$DDPM_CKPT"), so neither make nor the shell interprets a quote, $, backtick, ; or newline in it. ARGS, which
# holds several arguments, is split by Python's shlex (ddpm/cli.py), which runs nothing. The recipes test a
# variable with $(value NAME), never $(NAME), which would expand it.
USER_VARS := ARGS PROMPT CKPT OUT N GUIDANCE STEPS SAMPLER ETA SEED SPEC TITLE FROM SUPERSEDES SWEEPS NPROC PORT HOST \
             WORKERS STORAGE
$(foreach v,$(USER_VARS),$(eval export DDPM_$v := $$(value $v)))
# make would export every command-line variable to the recipes by expanding it, which runs a $(shell ...) in it.
unexport $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $v)),$v))
# "--flag=$DDPM_NAME" when NAME is set (the = form: a value that starts with '-' stays a value).
opt = $(if $(value $(1)),"--$(2)=$$DDPM_$(1)")

.DEFAULT_GOAL := help
.PHONY: help setup train sample test lint decisions adr runs eval export bench profile tensorboard clean digits clipart sweep ladder compare

help: ## list the targets
	@echo "make train                 train the default model (creates .venv on first use)"
	@echo "make train NPROC=N         the same, data-parallel in N processes (one per GPU; gloo on CPU) under torchrun"
	@echo "make sample PROMPT=\"...\"   PNG grid from the newest checkpoint; also N= GUIDANCE= STEPS= SAMPLER= ETA= SEED= CKPT= OUT="
	@echo "make test                  the test suite (CPU, about 8 minutes on 2 cores)"
	@echo "make lint                  ruff: syntax errors, undefined and unused names, import order, format"
	@echo "make decisions             regenerate the ADR index and check config.py against the accepted ADRs"
	@echo "make adr TITLE=\"...\"       write the next ADR, filled with config.py's undecided changes; SUPERSEDES=N"
	@echo "make adr TITLE=\"...\" FROM=runs/<sweep>   the ADR from a sweep's best point, its table and command"
	@echo "make sweep SPEC=decisions/sweeps/lr.toml    random search, seeds per point → runs/<name>/results.md"
	@echo "make sweep SPEC=... WORKERS=N STORAGE=URL   N workers here; the same STORAGE on other machines joins the study"
	@echo "make ladder SPEC=decisions/ladders/width.toml  sizes × seeds: loss and accuracy vs params/FLOPs, verdict"
	@echo "make compare SWEEPS=\"runs/a runs/b\"  finished sweeps side by side: each probe attribute, images to 0.9"
	@echo "make runs                  table of training runs, newest first"
	@echo "make eval                  probe-classifier accuracy, Fréchet distance, diversity, guidance sweep; CKPT= N= SAMPLER= STEPS= ETA= ARGS=--no-ema"
	@echo "make export CKPT=...       EMA weights as .safetensors + .json beside it (sample, eval, --init-from read it); OUT="
	@echo "make bench                 training and sampling speed against a matched diffusers UNet → runs/bench.md"
	@echo "make profile               where a training and a sampling step spend their time → runs/profile.md"
	@echo "make tensorboard           TensorBoard on runs/ (PORT=6006 HOST=localhost)"
	@echo "make digits                1,797 real handwritten digits as a captioned folder → runs/data/digits (scikit-learn)"
	@echo "make clipart               5,393 Open Clip Art drawings with free-text captions → runs/data/clipart (Debian package)"
	@echo "make setup                 only create .venv with the pinned dependencies"
	@echo "make clean                 delete runs/ and caches (keeps .venv)"
	@echo "Options: make train ARGS=\"--set LEARNING_RATE=2e-4 --resume\"; fine-tune: ARGS=\"--init-from model.safetensors\"   (python train.py --help for all)"

$(STAMP): requirements.txt requirements-dev.txt  # the pins pyproject.toml gives `pip install .` too
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -c "import torch, torchvision, open_clip; assert torch.__version__.startswith('2.14.1'), torch.__version__"
	rm -f .venv/.installed-* && touch $@

setup: $(STAMP) ## create .venv

# NPROC=N: N data-parallel processes on this machine under torchrun (ADR 0017); several machines: see README.
train: $(STAMP)
ifneq ($(value NPROC),)
	@case "$$DDPM_NPROC" in auto|cpu|gpu|[1-9]|[1-9][0-9]|[1-9][0-9][0-9]) ;; \
	*) echo "make train: NPROC=$$DDPM_NPROC is not a process count; use a number such as NPROC=4 (or auto, cpu, gpu)" >&2; exit 2;; esac
endif
	$(if $(value NPROC),$(PY) -m torch.distributed.run --standalone --nproc-per-node "$$DDPM_NPROC",$(PY)) train.py

sample: $(STAMP)
	$(PY) sample.py $(if $(filter undefined,$(origin PROMPT)),,"--prompt=$$DDPM_PROMPT") $(call opt,N,n) \
		$(call opt,GUIDANCE,guidance) $(call opt,STEPS,steps) $(call opt,SAMPLER,sampler) $(call opt,ETA,eta) \
		$(call opt,SEED,seed) $(call opt,CKPT,ckpt) $(call opt,OUT,out)

test: $(BENCH_STAMP)  # the bench's own tests need diffusers
	env -u DDPM_ARGS $(PY) -m pytest -q -n auto --dist loadfile tests  # one worker a core: ADR 0057

lint: $(STAMP)  # pyproject.toml's rules: syntax errors, undefined and unused names, import order; and the format
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

decisions: $(STAMP)
	$(PY) -m ddpm.decisions.check index
	$(PY) -m ddpm.decisions.check check

adr: $(STAMP)
	@test -n "$$DDPM_TITLE" || { echo 'make adr needs a title: make adr TITLE="Raise the learning rate"'; exit 2; }
	$(PY) -m ddpm.decisions.check new $(call opt,TITLE,title) $(call opt,SUPERSEDES,supersedes) $(call opt,FROM,from)

sweep: $(STAMP)
	@test -n "$$DDPM_SPEC" || { echo 'make sweep needs a spec: make sweep SPEC=decisions/sweeps/lr.toml'; exit 2; }
	$(PY) -m ddpm.experiments.sweep "$$DDPM_SPEC" $(call opt,WORKERS,workers) $(call opt,STORAGE,storage)

ladder: $(STAMP)
	@test -n "$$DDPM_SPEC" || { echo 'make ladder needs a spec: make ladder SPEC=decisions/ladders/width.toml'; exit 2; }
	$(PY) -m ddpm.experiments.ladder "$$DDPM_SPEC" $(call opt,WORKERS,workers) $(call opt,STORAGE,storage)

# SWEEPS holds several folders: its words are split with ARGS's (shlex), so a folder name with a space is quoted.
compare: $(STAMP)
	@test -n "$$DDPM_SWEEPS" || { echo 'make compare needs sweep folders: make compare SWEEPS="runs/default-1500 runs/pooled-text"'; exit 2; }
	DDPM_ARGS="$$DDPM_SWEEPS $$DDPM_ARGS" $(PY) -m ddpm.experiments.compare

runs: $(STAMP)
	$(PY) -m ddpm.decisions.runs

eval: $(STAMP)
	$(PY) -m ddpm.measure.evaluate $(call opt,CKPT,ckpt) $(call opt,N,n) $(call opt,GUIDANCE,guidance) \
		$(call opt,STEPS,steps) $(call opt,SAMPLER,sampler) $(call opt,ETA,eta)

export: $(STAMP)
	@test -n "$$DDPM_CKPT" || { echo 'make export needs a checkpoint: make export CKPT=runs/<run> (or its checkpoints/<file>.pt) [OUT=model.safetensors]'; exit 2; }
	$(PY) -m ddpm.run.export $(call opt,CKPT,ckpt) $(call opt,OUT,out)

digits: $(STAMP) requirements-data.txt  # then: make train ARGS="--set DATASET=folder --set DATA_DIR=runs/data/digits"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-data.txt
	$(PY) -m ddpm.data.make_digits_folder --out runs/data/digits

# Open Clip Art's drawings (Debian's openclipart-png, public domain) as a folder with free-text captions; no root:
# the package is fetched and unpacked under runs/data/.openclipart where the system has not installed it.
CLIPART_PNG := $(firstword $(wildcard /usr/share/openclipart/png) runs/data/.openclipart/usr/share/openclipart/png)
clipart: $(STAMP)  # then: make train ARGS="--set DATASET=folder --set DATA_DIR=runs/data/clipart --set RESIZE=pad"
	test -d $(CLIPART_PNG) || { mkdir -p runs/data/.openclipart && cd runs/data/.openclipart && \
		apt-get download openclipart-png && dpkg -x openclipart-png_*.deb . ; }
	$(PY) -m ddpm.data.make_clipart_folder --source $(CLIPART_PNG) --out runs/data/clipart

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	rm -f .venv/.bench-* && touch $@

bench: $(BENCH_STAMP)
	$(PY) -m ddpm.measure.bench

profile: $(STAMP)
	$(PY) -m ddpm.measure.profiling

tensorboard: $(STAMP)
	$(PY) -m tensorboard.main --logdir runs "--port=$${DDPM_PORT:-6006}" "--host=$${DDPM_HOST:-localhost}"

clean:
	rm -rf runs .pytest_cache
