# One image for every component: `credits run <component>` picks what the container runs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY services ./services
COPY projections ./projections
COPY infra ./infra
COPY contracts ./contracts
COPY clients ./clients
RUN pip install .

RUN useradd --system --uid 10001 credits
USER credits

# 8080: the API (`credits run api` only); 8081: the ops port every component serves (/healthz,
# /readyz, /metrics). The healthcheck asks the ops port's /healthz (liveness: the process serves),
# so it holds for whichever component the container runs, on CREDITS_OPS_PORT if set.
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, sys, urllib.request; port = os.environ.get('CREDITS_OPS_PORT', '8081'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"
CMD ["credits", "run", "all"]
