# edgematch: one image for every process type. The command picks the process:
#   docker run IMAGE intake | webhook | worker --queues match --concurrency 2 | beat
#   | health --readiness --process worker | status | dlq list …
# Metrics: set EDGEMATCH_METRICS_PORT (9100 in deploy/k8s) to serve /metrics.
# Installed the way scripts/bootstrap does it (a venv, versions pinned by requirements/dev.lock),
# without the dev extra: production dependencies only. No secret is baked in; configuration
# comes from EDGEMATCH_* and AWS_* variables at run time (see deploy/README.md).

# The base is pinned by tag (the same in both stages); add the digest
# (python:3.11.11-slim-bookworm@sha256:…) when you mirror it into your registry.
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/edgematch
COPY pyproject.toml README.md ./
COPY requirements/dev.lock requirements/dev.lock
# The application package alone: the sandbox, local stack and demo (devtools/) stay out.
COPY edgematch edgematch
RUN /opt/edgematch/bin/pip install --no-cache-dir -c requirements/dev.lock . \
    && /opt/edgematch/bin/edgematch --version

FROM python:3.11.11-slim-bookworm
# A fixed numeric id, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 edgematch \
    && useradd --system --uid 10001 --gid edgematch --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin edgematch
COPY --from=build /opt/edgematch /opt/edgematch
ENV PATH=/opt/edgematch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
# 9100: metrics; 8080: the notifications edgematch webhook receives (EDGEMATCH_WEBHOOK_PORT).
EXPOSE 9100 8080
# Exec form: edgematch is PID 1 and receives SIGTERM itself (warm shutdown, batches handed back).
ENTRYPOINT ["edgematch"]
CMD ["--help"]
