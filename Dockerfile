# One image for every service: the Ray head, the workers and gnomon itself, so task code
# and Gnomon's packages are identical on every node. Installs the wheel, not the checkout.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY executor executor
COPY scheduler scheduler
COPY web web
COPY templates templates
COPY examples examples
RUN pip wheel --no-deps -w /wheels .

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends procps iproute2 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl
COPY deploy /deploy
ENV GNOMON_STORAGE=/data/blobs
EXPOSE 8080 6380
