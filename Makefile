# rexec: `make run` starts a compute node, `make test` runs lint and the whole suite.
# Both install what they need first (Debian's R packages, a JDK, the virtualenv), idempotently.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := r-base-core r-base-dev r-cran-rserve r-cran-rsclient openjdk-17-jdk-headless postgresql \
                   libopenblas0-pthread chromium \
                   r-cran-plumber r-cran-jsonlite r-cran-httr r-cran-curl r-cran-testthat
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint setup deps blas account venv bench bench-services soak clean

run: setup
	$(VENV)/bin/rexec up

test: setup lint
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

setup: deps blas account venv

# The unprivileged account R shells run as when rexec starts as root (shell.user).
account:
	@if [ "$$(id -u)" = 0 ] && ! id -u rexec >/dev/null 2>&1; then \
	  echo "creating system account rexec"; \
	  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin rexec; \
	fi

# Install the Debian packages that are missing (apt-get update only when needed).
deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# R's BLAS and LAPACK: OpenBLAS (pthread build) through Debian's alternatives. Installing
# libopenblas0-pthread switches them in auto mode; this also undoes a manual choice of
# another BLAS (back to auto mode when OpenBLAS is the best, else --set), then checks
# that R itself reports OpenBLAS (shell.threads relies on it).
blas: deps
	@arch=$$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch); \
	for lib in libblas.so.3 liblapack.so.3; do \
	  want=/usr/lib/$$arch/openblas-pthread/$$lib; \
	  query=$$(update-alternatives --query $$lib-$$arch 2>/dev/null); \
	  now=$$(sed -n 's/^Value: //p' <<<"$$query"); best=$$(sed -n 's/^Best: //p' <<<"$$query"); \
	  if [ "$$now" != "$$want" ]; then \
	    echo "$$lib: $$want (was: $${now:-none})"; \
	    if [ "$$best" = "$$want" ]; then $(SUDO) update-alternatives --auto $$lib-$$arch; \
	    else $(SUDO) update-alternatives --set $$lib-$$arch $$want; fi || exit 1; \
	  fi; \
	done; \
	Rscript --vanilla -e 'b <- c(extSoftVersion()[["BLAS"]], La_library()); if (!all(grepl("openblas", b))) stop("R does not use OpenBLAS: ", paste(b, collapse = ", "))'

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Long load runs (1,000 connections over a minute); not part of `make test`.
soak: setup
	$(PY) -m pytest -q -s -m soak tests/soak

# Benchmarks against a real Rserve (not tests: no timing assertions). ARGS=--quick for < 1 min.
bench: setup
	$(PY) -m bench $(ARGS)

bench-services: setup
	$(PY) -m bench.services $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
