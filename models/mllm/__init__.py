"""Multimodal LLM backends that score DICL prompts: P(True) of the answer to the last question.

``load_scorer`` builds one from ``TTA_MLLM``: ``transformers:<hub id or local dir>`` (in-process)
or ``openai:<base URL>`` (any OpenAI-compatible chat-completions server with logprobs: vLLM,
SGLang, Ollama).
"""
