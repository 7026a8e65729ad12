# LoRA Studio for a GPU box or a Docker Space. PyPI's torch==2.13.0 wheel brings its CUDA libraries,
# so a slim Python base is enough; run with `--gpus all`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    LORA_STUDIO_DATA_DIR=/data/lora-studio \
    HF_HOME=/data/hf-cache \
    CMAKE_ARGS=-DLLAVA_BUILD=OFF

# A C/C++ toolchain: llama-cpp-python (GGUF export) builds llama.cpp from source on install.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 user && mkdir -p /data && chown user:user /data
WORKDIR /home/user/app

COPY --chown=user:user requirements.txt .
RUN pip install "$(grep -E '^torch==' requirements.txt)" && pip install -r requirements.txt

COPY --chown=user:user . .
RUN pip install --no-deps -e . && python -m trainer_backend.export.llama_cpp --install

USER user
VOLUME ["/data"]
EXPOSE 7860
CMD ["python", "app.py"]
