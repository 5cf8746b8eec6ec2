# Two entry points (see README): `make demo` sets everything up and runs the main job;
# `make test` runs the whole test suite against a real Kafka broker and Redis it starts itself.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# The test stack runs on its own ports and state dir, so it never touches a stack you run by hand.
TEST_KAFKA ?= 127.0.0.1:19092
TEST_REDIS ?= redis://127.0.0.1:16379/0
TEST_ENV = STREAMREC_KAFKA_BOOTSTRAP=$(TEST_KAFKA) \
           STREAMREC_REDIS_URL=$(TEST_REDIS) \
           STREAMREC_STATE_DIR=$(CURDIR)/.state/test

.PHONY: install demo test unit down-test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,llm,bench]'
	touch $@

demo: install
	$(BIN)/streamrec up
	$(BIN)/streamrec topics create
	$(BIN)/python -m streamrec.demo

unit: install
	$(BIN)/pytest -q -m "not integration"

test: install
	$(TEST_ENV) $(BIN)/streamrec up
	$(TEST_ENV) $(BIN)/pytest; rc=$$?; $(TEST_ENV) $(BIN)/streamrec down; exit $$rc

down-test:
	$(TEST_ENV) $(BIN)/streamrec down

clean: down-test
	rm -rf $(VENV) .state
