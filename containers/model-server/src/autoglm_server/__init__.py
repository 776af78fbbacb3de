"""autoglm model server: an OpenAI-compatible LLM server with continuous batching."""

from __future__ import annotations

__version__ = "0.1.0"
