# The migrationkit image: the CLI and the worker (`python -m migrationkit.worker`).
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
RUN pip install --no-cache-dir .
# The worker serves /metrics and /healthz here; compose maps nothing outward.
ENV MIGRATIONKIT_METRICS_HOST=0.0.0.0 MIGRATIONKIT_METRICS_PORT=9108
EXPOSE 9108
USER nobody
ENTRYPOINT ["python", "-m", "migrationkit.worker"]
