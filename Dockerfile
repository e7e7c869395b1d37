# The certledger image: every service of docker-compose.yml runs it with its own command.
# The build installs the project exactly as the README does, into a virtual environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/certledger/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY ledger ledger
COPY node node
COPY verifier verifier
COPY certledger certledger
RUN python3 -m venv /opt/certledger && /opt/certledger/bin/pip install -q .

# A user without a login, and the mount points of docker-compose.yml's volumes: a new
# named volume takes the owner of the directory it is mounted on.
RUN useradd --system --user-group --uid 10001 --no-create-home --home-dir /nonexistent certledger \
    && mkdir -p /data /consortium /governance \
       /nodes/hangzhou-amr /nodes/hangzhou-psb /nodes/hangzhou-hrss \
    && chown certledger:certledger /data /consortium /governance \
       /nodes/hangzhou-amr /nodes/hangzhou-psb /nodes/hangzhou-hrss \
    && chmod 0700 /data /governance /nodes/hangzhou-amr /nodes/hangzhou-psb /nodes/hangzhou-hrss

USER certledger
WORKDIR /data
EXPOSE 8080
CMD ["certledger", "--help"]
