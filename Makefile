# The README's two commands: `make demo` and `make test`. Both create the virtual
# environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The Flink tests' client: apache-beam 2.62, the release whose Flink job server and
# Kafka expansion service Maven Central serves (runners/flink-constraints.txt).
FLINK_VENV ?= .venv-flink
SAMPLE ?= sample
OUT ?= out
PREDICTIONS ?= 20000

.PHONY: demo test lint bench clean flink-env

$(BIN)/msewatch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(FLINK_VENV)/bin/msewatch: pyproject.toml runners/flink-constraints.txt
	$(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/pip install --quiet --upgrade pip
	$(FLINK_VENV)/bin/pip install --quiet -e . -c runners/flink-constraints.txt
	touch $@

flink-env: $(FLINK_VENV)/bin/msewatch

demo: $(BIN)/msewatch
	$(BIN)/msewatch generate --out $(SAMPLE) --predictions $(PREDICTIONS)
	rm -rf $(OUT)
	$(BIN)/msewatch run --predictions '$(SAMPLE)/predictions.jsonl' \
	  --labels '$(SAMPLE)/labels.jsonl' --output $(OUT) \
	  --slice region --slice model_version,region --slo docs/examples/demo-slo.yaml
	$(BIN)/msewatch report $(OUT) --out $(OUT)/report.html

test: $(BIN)/msewatch $(FLINK_VENV)/bin/msewatch
	$(BIN)/ruff check .
	MSEWATCH_FLINK_PYTHON=$(abspath $(FLINK_VENV))/bin/python $(BIN)/pytest -q

lint: $(BIN)/msewatch
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(BIN)/msewatch
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(FLINK_VENV) $(SAMPLE) $(OUT) .pytest_cache
