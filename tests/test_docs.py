"""The generated config reference in docs/ stays in sync with the schema."""

from __future__ import annotations

from pathlib import Path

from genlab.config import FAMILIES, Config, describe_family, describe_schema

REFERENCE = Path(__file__).parents[1] / "docs" / "config-reference.md"


def render() -> str:
    """The reference page's text (regenerate with `python tests/test_docs.py`)."""
    shared = "\n".join(describe_schema(Config))
    families = "".join(f"\n## model.family={name}\n\nThe keys this family adds; they are valid only in its runs.\n\n"
                       f"```yaml\n" + "\n".join(describe_family(name)) + "\n```\n" for name in sorted(FAMILIES))
    return (
        "# Config reference\n\nEvery key with its default and description, generated from `genlab/config/` "
        "(`genlab config show PRESET` prints a preset's resolved values the same way).\n\n"
        "## Shared by every family\n\n`model.architecture` is looked up in the family's own registry; "
        "its default is the family's.\n\n```yaml\n" + shared + "\n```\n" + families
    )


def test_config_reference_is_current():
    assert REFERENCE.read_text() == render(), "regenerate with: python tests/test_docs.py"


if __name__ == "__main__":
    REFERENCE.write_text(render())
