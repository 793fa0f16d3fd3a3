# Findings Hub: one process (receiver, API, dispatcher, scheduler) on the embedded SQLite store.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

RUN useradd --create-home --uid 10001 hub \
    && mkdir -p /data /etc/hub \
    && chown hub:hub /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY connectors ./connectors
COPY mappings ./mappings
COPY config.example.yaml /etc/hub/hub.yaml
RUN pip install -e .

USER hub
VOLUME ["/data"]
EXPOSE 8080

# The SQLite file lives on the volume; listen on all interfaces inside the container.
ENV HUB_STORAGE_PATH=/data/hub.db
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"

ENTRYPOINT ["hub", "serve", "--config", "/etc/hub/hub.yaml", "--host", "0.0.0.0", "--port", "8080"]
