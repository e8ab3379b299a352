"""The README's promises stay true: the two commands first, every setting in the table."""

from __future__ import annotations

from pathlib import Path

from lethe.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join(README.read_text().splitlines()[:8])
    assert "make run" in head and "make test" in head


def test_every_setting_is_in_the_readme_table() -> None:
    text = README.read_text()
    missing = [n for n in Settings.model_fields if f"`LETHE_{n.upper()}`" not in text]
    assert missing == [], f"add these settings to the README table: {missing}"
