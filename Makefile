# The README's two commands: `make demo` and `make test`. Both create the virtual
# environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE ?= sample
OUT ?= out
PREDICTIONS ?= 20000

.PHONY: demo test lint bench clean

$(BIN)/msewatch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/msewatch
	$(BIN)/msewatch generate --out $(SAMPLE) --predictions $(PREDICTIONS)
	rm -rf $(OUT)
	$(BIN)/msewatch run --predictions '$(SAMPLE)/predictions.jsonl' \
	  --labels '$(SAMPLE)/labels.jsonl' --output $(OUT) \
	  --slice region --slice model_version,region --slo docs/examples/demo-slo.yaml
	$(BIN)/msewatch report $(OUT) --out $(OUT)/report.html

test: $(BIN)/msewatch
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(BIN)/msewatch
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(BIN)/msewatch
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(SAMPLE) $(OUT) .pytest_cache
