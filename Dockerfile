# One image for the web server and the Celery workers (docker-compose.yml runs both).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/mieruka
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install ".[postgres,celery,s3]"
COPY examples ./examples
RUN useradd --create-home mieruka && mkdir -p /data && chown mieruka /data
USER mieruka
EXPOSE 8000
CMD ["mieruka", "run", "examples/lab_tools/app.py", "--host", "0.0.0.0"]
