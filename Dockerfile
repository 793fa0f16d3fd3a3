# Findings Hub: one process (receiver, API, dispatcher, scheduler) on the embedded SQLite store.
# tests/test_dist.py reproduces this image without Docker (the same files, the wheel, a non-root user, a read-only
# /etc/hub, a writable /data) and reads this file to check it still does what the test does.

# The wheel, built from exactly the files a release ships: no checkout is left in the image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY connectors ./connectors
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# A non-editable install: the built-in mappings are package data inside it.
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels

# /etc/hub belongs to root (the hub reads it, never writes it); /data, the volume, is the hub user's own.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home hub \
    && mkdir -p /data /etc/hub \
    && chown hub:hub /data \
    && chmod 0750 /data
# The default config keeps the store and the file output under /data.
COPY docker/hub.yaml /etc/hub/hub.yaml
RUN chmod 0644 /etc/hub/hub.yaml

USER hub
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]

# Listen on every interface inside the container, whatever server.host a mounted config says.
ENTRYPOINT ["hub"]
CMD ["serve", "--config", "/etc/hub/hub.yaml", "--host", "0.0.0.0", "--port", "8080"]
