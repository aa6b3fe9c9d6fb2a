# Peerbot: a small image that runs `peerbot run` as a non-root user, keeping its data in /data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PEERBOT_DATABASE_URL=sqlite+aiosqlite:////data/peerbot.db \
    PEERBOT_WEB_HOST=0.0.0.0 \
    PEERBOT_WEB_PORT=8080

WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY adapters ./adapters
COPY bot ./bot
COPY migrations ./migrations
RUN pip install . && useradd --system --uid 10001 --home-dir /data peerbot \
    && mkdir -p /data && chown peerbot /data

USER peerbot
VOLUME ["/data"]
WORKDIR /data
# The web server (/health, /ready, /metrics) on every interface of the container: publish it with -p.
EXPOSE 8080
# Liveness: the slim image has no curl. /ready (the database, the platforms, the tick) is for an
# orchestrator's readiness probe; a restart would not mend a platform that is down.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PEERBOT_WEB_PORT', '8080'), timeout=4)"]
# Mount a config at /data/config.yaml, or pass secrets as PEERBOT_* environment variables.
ENTRYPOINT ["peerbot"]
CMD ["run"]
