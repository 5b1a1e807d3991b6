"""The generated config reference in docs/ stays in sync with the schema."""

from __future__ import annotations

from pathlib import Path

from genlab.config import describe_schema

REFERENCE = Path(__file__).parents[1] / "docs" / "config-reference.md"


def render() -> str:
    """The reference page's text (regenerate with `python tests/test_docs.py`)."""
    body = "\n".join(describe_schema())
    return (
        "# Config reference\n\nEvery key with its default and description (generated from `genlab/config.py`; "
        "`genlab config show PRESET` prints a preset's values the same way).\n\n```yaml\n" + body + "\n```\n"
    )


def test_config_reference_is_current():
    assert REFERENCE.read_text() == render(), "regenerate with: python tests/test_docs.py"


if __name__ == "__main__":
    REFERENCE.write_text(render())
