"""Model client module for AI inference."""

from phone_agent.model.client import ModelClient, ModelConfig

__all__ = ["ModelClient", "ModelConfig"]
