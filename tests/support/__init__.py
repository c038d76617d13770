"""What the tests share: the checkout's root, and (as they move here) the helpers several test
files would otherwise copy. Product code and the simulators never import from here."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
"""The source checkout: the tests read its README, config.example.toml and conftest."""
