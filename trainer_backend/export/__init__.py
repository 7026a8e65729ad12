"""Export a finished job: merged weights, GGUF files, a LoRA GGUF adapter and an Ollama Modelfile, each checked."""
