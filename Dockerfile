# One image for every process of docker-compose.yml (worker, flower, migrations, sample receiver).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY . .
RUN pip install ".[local]" && useradd --create-home webhooks && mkdir /shared /spool && chown webhooks /shared /spool
USER webhooks
CMD ["celery", "-A", "tasks", "worker", "--pool", "threads", "--concurrency", "8", "--loglevel", "INFO"]
