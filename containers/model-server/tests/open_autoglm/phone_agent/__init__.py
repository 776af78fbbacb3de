"""Written for our tests, not Open-AutoGLM's: its phone_agent/__init__.py imports the agent and the adb, hdc and
xctest device layers, which our tests do not need. Every other file under this directory is Open-AutoGLM's, unchanged
(README.md)."""
