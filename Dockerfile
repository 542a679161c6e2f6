# crmlift for the migration fleet: the CLI as entrypoint, run as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service service
COPY adapters adapters
COPY ratelimit ratelimit
COPY journal journal
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 crmlift
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER crmlift
WORKDIR /home/crmlift
# The embedded journal and file blobs live here unless CRMLIFT_JOURNAL_DSN is set.
ENV CRMLIFT_DATA_DIR=/home/crmlift/data
VOLUME ["/home/crmlift/data"]
ENTRYPOINT ["crmlift"]
CMD ["--help"]
