# rexec: one image for both kinds of node. `rexec serve` (compute, QAP1 on 6311) and
# `rexec web` (REST API on 12800) are chosen by the arguments; see docs/deploy.md.
#
#   docker build -t rexec:dev .
#   docker run --rm rexec:dev --help
#
# Two stages: rpy2 compiles its cffi extension against R's headers, so the build stage
# has r-base-dev and a compiler; the runtime stage gets the virtualenv and R itself only.
# Both stages use the same Debian release and the same venv path (/opt/rexec), so the
# venv's scripts and compiled modules work unchanged after the copy.

ARG DEBIAN_RELEASE=bookworm

FROM debian:${DEBIAN_RELEASE}-slim AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-dev build-essential r-base-core r-base-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/rexec && /opt/rexec/bin/pip install --upgrade pip
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# A regular (non-editable) install: the image does not need the source tree.
RUN /opt/rexec/bin/pip install . \
 && /opt/rexec/bin/rexec --help >/dev/null

FROM debian:${DEBIAN_RELEASE}-slim
ENV DEBIAN_FRONTEND=noninteractive
# R from Debian (the same packages `make deps` installs, less the development and test
# ones); libopenblas0-pthread becomes R's BLAS and LAPACK through Debian's alternatives
# (checked below, as `make blas` does); tini is PID 1. python3 is the interpreter the
# venv from the build stage links to (the venv module itself is needed there only).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      r-base-core r-cran-rserve r-cran-jsonlite libopenblas0-pthread \
      python3 tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && Rscript --vanilla -e 'b <- c(extSoftVersion()[["BLAS"]], La_library()); if (!all(grepl("openblas", b))) stop("R does not use OpenBLAS: ", paste(b, collapse = ", "))'

COPY --from=build /opt/rexec /opt/rexec

# The unprivileged account everything runs as. A fixed numeric uid, so that Kubernetes'
# runAsNonRoot can check it (deploy/kubernetes uses the same uid and gid). Started as
# this user, rexec serve runs its R shells as this user too (see docs/deploy.md).
RUN groupadd --system --gid 10001 rexec \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/rexec --create-home \
      --shell /usr/sbin/nologin rexec

# No .pyc files at run time (the root file system is read-only in Kubernetes), logs
# unbuffered, the venv first on PATH.
ENV PATH=/opt/rexec/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

WORKDIR /var/lib/rexec
USER 10001:10001

# 6311: the compute node's QAP1 port (server.port); 12800: the web node (rexec web --port).
EXPOSE 6311 12800

# tini reaps zombies and passes SIGTERM on to rexec, which drains (rexec serve: running
# requests get server.shutdown_grace seconds). No -g: the supervisor stops its R shells
# itself; a signal to the whole process group would bypass that.
ENTRYPOINT ["/usr/bin/tini", "--", "rexec"]
CMD ["--help"]
