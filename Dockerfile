# Peerbot: a small image that runs `peerbot run` as a non-root user, keeping its data in /data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PEERBOT_DATABASE_URL=sqlite+aiosqlite:////data/peerbot.db

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
# Mount a config at /data/config.yaml, or pass secrets as PEERBOT_* environment variables.
ENTRYPOINT ["peerbot"]
CMD ["run"]
