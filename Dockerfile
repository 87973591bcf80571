# The NExT-Chat Label Studio ML backend (GPU: run with the NVIDIA container toolkit, see docs/deploy.md).
#   docker build -t nextchat-ls .
#   docker run --gpus all -p 9090:9090 -v hf-cache:/data/hf \
#     -e LABEL_STUDIO_URL=http://label-studio:8080 -e LABEL_STUDIO_API_KEY=... nextchat-ls
# torch 2.14.1 from PyPI is a CUDA build that carries its own CUDA libraries, so a slim Python base
# is enough; the host only needs the NVIDIA driver.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/hf \
    HOST=0.0.0.0 \
    PORT=9090 \
    DEVICE=cuda \
    DTYPE=bf16

RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY model/ model/
COPY backend/ backend/
COPY label_config/ label_config/

RUN useradd --create-home --uid 1000 app && mkdir -p /data/hf /data/stage3 && chown -R app /data
USER app
VOLUME ["/data"]
EXPOSE 9090

# /ready answers 503 until the model is loaded (a 7B checkpoint: minutes on first download); /health is 200 at once
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('PORT', '9090'), timeout=4)"

# NEXTCHAT_CHECKPOINT / NEXTCHAT_VISION_TOWER (and every other setting) come from the environment
CMD ["python", "-m", "backend", "serve"]
