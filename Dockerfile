# One image for every process of docker-compose.yml (worker, flower, migrations, sample receiver).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY . .
RUN pip install ".[local]" && useradd --create-home webhooks && mkdir /shared /spool && chown webhooks /shared /spool
USER webhooks
# The Procfile's worker, word for word (tests/unit/test_deployment_files.py): the Procfile decides
CMD ["celery", "-A", "tasks", "worker", "--pool", "threads", "--concurrency", "64", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
