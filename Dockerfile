# The one image of Crypitor Monitor: `crypitor run` (the default) or `crypitor service`.
# Linted by hadolint in tests/deploy; the config is mounted at /etc/crypitor/config.toml
# (the copy built in listens on every interface and keeps its state in /var/lib/crypitor).

# --- builder: a venv with the project and its dependencies, installed from a wheel ---------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/crypitor
COPY pyproject.toml README.md ./
COPY catalog/ catalog/
COPY core/ core/
COPY chains/ chains/
COPY probes/ probes/
COPY service/ service/
COPY alerts/ alerts/
COPY dashboards/ dashboards/
COPY monitor/ monitor/
RUN /opt/crypitor/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/crypitor/bin/pip install /wheels/*.whl

# --- runtime: the venv on a slim Python, as an unprivileged user ---------------------------
FROM python:3.11-slim-bookworm

RUN groupadd --system --gid 10001 crypitor \
    && useradd --system --uid 10001 --gid crypitor --no-create-home \
       --home-dir /var/lib/crypitor --shell /usr/sbin/nologin crypitor \
    && install -d -o crypitor -g crypitor -m 0700 /var/lib/crypitor

COPY --from=builder /opt/crypitor /opt/crypitor
COPY deploy/docker/config.toml /etc/crypitor/config.toml

ENV PATH=/opt/crypitor/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /var/lib/crypitor
USER 10001:10001

# [monitor].listen and [service].listen (CONTRACT defaults)
EXPOSE 9300 8080

# No HEALTHCHECK: one image serves two roles on different ports; the orchestrator probes
# /healthz and /readyz of the role it runs (deploy/kubernetes, deploy/compose.yaml).

ENTRYPOINT ["crypitor"]
CMD ["run", "-c", "/etc/crypitor/config.toml"]
