# kit: `make` runs the demo end to end; `make test` runs the test suite (`make test-slow` its end-to-end runs). Both
# set themselves up.
#   make folds train predict DATA=path/to/data      # your data, quick preset (CPU)
#   make folds train predict EXP="resnest50d_spinalnet resnet50" DATA=path/to/data
#   make train GPUS="0 1 2 3"          # one process per GPU, each taking the next free fold
#   make submit COMP=slug [FILE=...]   # kaggle competitions submit of the best-CV submission (or FILE)
#   make leaderboard [COMP=slug]       # merge Kaggle's public/private scores and print the table
#   make blend EXP="A B" [STEPS=50]    # weights fitted on the experiments' OOF predictions, nested CV
#   make stack EXP="A [B]"             # boosted trees on their OOF predictions + the competition's tabular columns
#   make sweep EXP=A TRIALS=20         # Optuna over configs/A.sweep.yaml: trials A-t<n>, the best as configs/A_best.yaml
#                                      #   (SCREEN=1: trials ranked on fold 0, the best then trained on every fold)
#   make pseudo FROM=A NAME=B          # B: A + confidently pseudo-labelled test images (THRESHOLD=0.9)
#   make notebook COMP=slug            # code competitions: a Kaggle dataset + kernel that predict offline
#   make notebook-push COMP=slug       # datasets create/version + kernels push; make notebook-status COMP=slug
#   make export [OUT=bundle]           # inference bundle: python -m kit predict --bundle bundle data=...
#                                      #   (STACK=1: the stack of EXP; BLEND=1: their newest blend's weights)
SHELL := /bin/bash
PY := .venv/bin/python
# COMP carries the flow: after `make download COMP=slug`, every target reads data/<slug> (its outputs in folds/<slug>/
# and submissions/<slug>/, apart from every other data set's)
DATA ?= $(if $(COMP),data/$(COMP),data/demo)
# Without EXP the kit decides, as for every entry point (kit/jobs/cli.py default_experiments, said in one line):
# the demo pair on the demo data, the quick preset on your own.
EXP ?=
ARGS ?=
GPUS ?=
COMP ?=
FILE ?=
OUT ?= bundle
THRESHOLD ?= 0.9
TRIALS ?= 20
STEPS ?=
CHROMIUM := /usr/bin/chromium
KIT = $(PY) -m kit
RUN_ARGS = $(if $(strip $(EXP)),--exp $(EXP)) data=$(DATA) $(ARGS)
# The CPU allocator: python -m kit restarts itself under mimalloc (faster training on the CPU, measured in
# docs/BENCHMARKS.md); KIT_ALLOCATOR=off make ... keeps glibc (kit/allocator.py).

.DEFAULT_GOAL := demo
.PHONY: demo install folds train predict blend stack sweep pseudo export leaderboard submit download report notebook notebook-push notebook-status test test-slow test-all bench bench-fastai bench-stack cache reliability clean clean-all gpu-check gpu-wheels

# folds, train and predict in one process (kit run): one start-up of torch instead of three
demo: install $(if $(filter data/demo,$(DATA)),data/demo/solution.csv)
	$(KIT) run $(RUN_ARGS)

# The venv is rebuilt only when requirements.txt or constraints.txt (every package, frozen) changes.
.venv/.installed: requirements.txt constraints.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet pip==26.3
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

install: .venv/.installed

data/demo/solution.csv: | install
	$(KIT) demo-data --out data/demo

folds: install $(if $(filter data/demo,$(DATA)),data/demo/solution.csv)
	$(KIT) folds $(RUN_ARGS)

train: install
ifeq ($(GPUS),)
	$(KIT) train $(RUN_ARGS)
else
	@# one process per GPU; each takes the next free fold of any experiment (fold<k>/.train.lock)
	@n=$(words $(GPUS)); pids=""; \
	for g in $(GPUS); do \
	  CUDA_VISIBLE_DEVICES=$$g KIT_LOCAL_PROCS=$$n $(KIT) train $(RUN_ARGS) & pids="$$pids $$!"; \
	done; rc=0; for p in $$pids; do wait $$p || rc=1; done; exit $$rc
endif

cache: install
	$(KIT) cache $(RUN_ARGS)

predict: install
	$(KIT) predict $(RUN_ARGS)

pseudo: install
	$(KIT) pseudo --from $(FROM) --name $(NAME) --threshold $(THRESHOLD) data=$(DATA) $(ARGS)

blend: install
	$(KIT) blend $(RUN_ARGS)$(if $(STEPS), --steps $(STEPS))

stack: install
	$(KIT) stack $(RUN_ARGS)

sweep: install
	$(KIT) sweep $(RUN_ARGS) --trials $(TRIALS)$(if $(SCREEN), --screen)

export: install
	$(KIT) export $(RUN_ARGS) --out $(OUT)$(if $(STACK), --stack)$(if $(BLEND), --blend)$(if $(STEPS), --steps $(STEPS))

# one self-contained page of the data set: the leaderboard, CV against public/private, each experiment's figures
report: install
	$(KIT) report $(RUN_ARGS)

leaderboard: install
	$(KIT) leaderboard $(RUN_ARGS) $(if $(COMP),--comp $(COMP))

submit: install
	$(KIT) submit $(RUN_ARGS) --comp $(COMP) $(if $(FILE),--file $(FILE))

download: install
	$(KIT) download --comp $(COMP)

# a code competition: notebook/<slug>/dataset (bundle + wheels) and kernel (offline notebook), Kaggle's formats
notebook: install
	$(KIT) notebook $(RUN_ARGS) --comp $(COMP)

# kaggle datasets create (or version) and kernels push of notebook/<slug>/; then the kernel's run status
notebook-push: install
	$(KIT) notebook-push --comp $(COMP)

notebook-status: install
	$(KIT) notebook-status --comp $(COMP)

# one worker per core, a torch thread each (tests/conftest.py). make test: every test but the end-to-end runs marked
# slow (about 4 minutes on 2 cores); make test-slow: those alone (about 6); CI runs both (.ci/run); make test-all: the
# whole suite in one run (about 10)
PYTEST := $(PY) -m pytest -q -n auto --dist worksteal
test: install .whl/notebook/.done $(CHROMIUM)
	$(PYTEST) -m "not slow"

test-slow: install .whl/notebook/.done $(CHROMIUM)
	$(PYTEST) -m slow

test-all: install .whl/notebook/.done $(CHROMIUM)
	$(PYTEST)

# the headless browser tests/test_report.py opens the report page in (through playwright): Debian's chromium,
# installed where make runs as root; elsewhere that test skips, saying how (KIT_BROWSER_REQUIRED=1 makes it fail)
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the report page's browser test"; \
	  apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; \
	else echo "no $(CHROMIUM): the report page's browser test will skip (as root: apt-get install chromium)"; fi

# the wheels a Kaggle notebook installs offline (kit/jobs/notebook.py KAGGLE_LACKS): tests/test_notebook.py runs the
# generated notebook in an environment without them, as Kaggle's image is
# and another timm than the kit's pin, which the Kaggle-like image of that test holds (a Kaggle image's versions are
# its own: the kernel must say where they differ from the bundle's)
KAGGLE_IMAGE_TIMM := 1.0.20
.whl/notebook/.done: requirements.txt
	$(PY) -m pip download -q --no-deps -d .whl/notebook $$($(PY) -c "from kit.jobs.notebook import specs; print(*specs())")
	$(PY) -m pip download -q --no-deps -d .whl/kaggle-image timm==$(KAGGLE_IMAGE_TIMM)
	touch $@

bench: install
	$(PY) -m bench $(ARGS)

# fastai's documented default path beside the kit's, same data, cores and clock (bench/fastai_default.py, about
# an hour a set at most): fastai in a venv of its own, so the kit's stays as requirements.txt makes it
.venv-fastai/.installed: requirements.txt constraints.txt bench/requirements-fastai.txt
	test -x .venv-fastai/bin/python || python3 -m venv .venv-fastai
	.venv-fastai/bin/python -m pip install --quiet pip==26.3
	.venv-fastai/bin/python -m pip install --quiet -r requirements.txt -r bench/requirements-fastai.txt -c constraints.txt
	touch $@

bench-fastai: .venv-fastai/.installed
	.venv-fastai/bin/python -m bench.fastai_default

# kit stack's learner against LightGBM's on the same features and folds (bench/stack.py, about 8 minutes): LightGBM
# in a folder of its own on the path, so the kit's venv stays as requirements.txt makes it
.whl/bench-lightgbm/.done: | install
	$(PY) -m pip install --quiet --no-deps --target .whl/bench-lightgbm lightgbm==4.7.0 narwhals==2.29.0
	touch $@

bench-stack: .whl/bench-lightgbm/.done
	PYTHONPATH=.whl/bench-lightgbm $(PY) -m bench --only stack

# On a CUDA machine: GPU tests, training speed per setting, batched TTA (bench/gpu_check.py, docs/BENCHMARKS.md).
# A machine with its own torch: make gpu-check PY=python3. Without CUDA it says so in one line.
gpu-check: $(if $(filter .venv/bin/python,$(PY)),install)
	$(PY) -m bench.gpu_check

# The wheels the lent GPU machine's Python (3.12; torch, timm, scikit-learn, pandas, opencv there) lacks, into .whl/
# (ignored): they travel with the device call that runs bench/gpu_check.py (its docstring has the command).
GPU_WHEELS := albumentations==2.0.8 albucore==0.0.24 simsimd==6.5.16 stringzilla==5.3.2 pydantic==2.14.4 \
  pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 ttach==0.0.3 cmeel==0.62.0 \
  cmeel-mimalloc==3.4.3 iterative-stratification==0.1.9
gpu-wheels:
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)
	@du -sh .whl

reliability: install
	$(PY) tests/killtest.py --trials 10

# The demo's data and outputs only (its experiments, folds made from it, its submissions and leaderboard rows).
clean:
	@if test -x $(PY); then $(KIT) demo-data --clean; else rm -rf data/demo; fi

# Every generated fold, checkpoint, submission and bundle, of every experiment; keeps the READMEs and your DATA.
clean-all:
	@echo "removing every experiment, fold, submission and bundle (folds/, submissions/, bundle/; not DATA)"
	rm -rf data/demo folds/*/ folds/folds.csv folds/folds.json bundle bundle.zip
	rm -f submissions/*.csv submissions/*.json submissions/*.png submissions/*.zip
	rm -rf submissions/*/
