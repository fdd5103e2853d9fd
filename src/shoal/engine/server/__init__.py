"""Shoal's engine server: the OpenAI-compatible HTTP front of one engine (`shoal serve`).

Routes, metrics and admin contract: docs/serving.md and DESIGN.md. Heavy imports (torch, the engine) happen
only when a server starts, so importing this package stays cheap.
"""
