# Images of the two services (build with --target):
#   docker build --target llm-service -t llm-service:latest .
#   docker build --target executor-service -t executor-service:latest .
#   docker build --target heavy-executor -t heavy-executor:latest .
# tini runs as PID 1 so orphaned processes are reaped and SIGTERM reaches the worker.
FROM python:3.11-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini libseccomp2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 app && useradd --uid 1000 --gid 1000 --no-create-home app
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY pipeline ./pipeline
COPY producers ./producers
COPY consumers ./consumers
COPY llm_worker ./llm_worker
COPY executor_worker ./executor_worker
COPY job_templates ./job_templates
RUN pip install .
# The Job template is data, not part of the installed packages.
ENV HEAVY_JOB_TEMPLATE=/app/job_templates/heavy-job.yaml
USER 1000:1000
ENTRYPOINT ["tini", "--", "llmexec"]

FROM base AS llm-service
EXPOSE 8000
CMD ["worker", "llm", "--port", "8000"]

FROM base AS executor-service
USER root
# What light jobs may import; keep LIGHT_PACKAGES in the ConfigMap equal to this list.
RUN pip install numpy scipy sympy
USER 1000:1000
EXPOSE 8001
CMD ["worker", "executor", "--port", "8001"]

# One heavy Job: reads /llmexec/job, prints one result record (job_templates/README.md).
# The template mounts /work (emptyDir) as the only writable place; the root stays read-only.
FROM base AS heavy-executor
USER root
# What heavy jobs may import; keep HEAVY_PACKAGES in the ConfigMap equal to this list.
RUN pip install numpy scipy sympy pandas
USER 1000:1000
ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "executor_worker.heavy_main", "--job-dir", "/llmexec/job"]
