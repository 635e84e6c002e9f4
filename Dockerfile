# The sidecar in one small image: python:3.11-slim, no compiler, runs as a non-root user.
#   docker build -t lead-sla-sidecar .
#   docker run --env-file .env -v sidecar-data:/data -p 8080:8080 lead-sla-sidecar          # sidecar run
# compose.yaml runs it with PostgreSQL, against the built-in emulators by default (README "Deploy").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SIDECAR_WEB_HOST=0.0.0.0 \
    SIDECAR_WEB_PORT=8080 \
    SIDECAR_DATABASE_URL=sqlite:////data/sidecar.db

WORKDIR /app
# Installed in place (-e): `sidecar init` and the emulated mode find config/*.example.yaml beside the
# code, as in a checkout. The demo extra brings trustme for the emulators (compose's default mode);
# postgres brings psycopg. No compiler needed: every dependency ships a wheel.
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
COPY connectors ./connectors
COPY config ./config
RUN pip install -e ".[postgres,demo]" \
 && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin sidecar \
 && mkdir -p /data \
 && chown -R sidecar:sidecar /data /app/config

USER sidecar
VOLUME ["/data"]
EXPOSE 8080
# Liveness only (/healthz: the process and its database answer). /readyz reports failing CRMs: alert
# on it, do not restart for it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SIDECAR_WEB_PORT', '8080'), timeout=4)"]
CMD ["sidecar", "run"]
