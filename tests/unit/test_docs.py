"""The docs say what the code reads: every setting, and every other ROOMCAST_* variable.

docs/configuration.md's settings table is generated from jobs/settings.py (name, default and
description of each field), so it cannot drift: after adding or changing a setting, rewrite it
with ``.venv/bin/python -m tests.unit.test_docs``; the test below fails until then and says so.
"""

from __future__ import annotations

import re

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from jobs.settings import Settings

from ..stack import REPO

DOC = REPO / "docs" / "configuration.md"
BEGIN = (
    "<!-- settings table: generated from jobs/settings.py by "
    "`.venv/bin/python -m tests.unit.test_docs`; do not edit it by hand -->"
)
END = "<!-- end of the settings table -->"
#: Where the code reads environment variables, and where the processes are started.
SOURCES = [
    "api",
    "jobs",
    "worker",
    "pipeline",
    "devstack",
    "scripts",
    "bench",
    "celeryconfig.py",
    "Procfile",
]
#: Names that are not variables: the docs' "field x is ROOMCAST_X".
NOT_VARIABLES = {"ROOMCAST_X"}
VARIABLE = re.compile(r"\bROOMCAST_[A-Z0-9_]*[A-Z0-9]\b")


def env_name(name: str, field: FieldInfo) -> str:
    """The environment variable a field is read from (pydantic-settings' rule)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str)
        return first
    if isinstance(alias, str):
        return alias
    return f"ROOMCAST_{name.upper()}"


def default_text(field: FieldInfo) -> str:
    """The default as it is written in the environment; "empty" for none."""
    value = field.default
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def settings_table() -> str:
    """The Markdown table of every setting, in the order jobs/settings.py declares them."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        # Markdown would take <room> for an HTML tag and hide it.
        meaning = (field.description or "").replace("|", "\\|")
        meaning = meaning.replace("<", "&lt;").replace(">", "&gt;")
        if field.annotation is SecretStr:
            meaning += " Secret: never logged or shown."
        lines.append(f"| `{env_name(name, field)}` | {default_text(field)} | {meaning} |")
    return "\n".join(lines)


def documented_table(text: str) -> str:
    """The table between the markers in ``text``."""
    assert BEGIN in text and END in text, f"{DOC} lost its settings table markers"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def code_variables() -> set[str]:
    """Every ROOMCAST_* name written in the code, the scripts and the Procfile."""
    found: set[str] = set()
    for source in SOURCES:
        path = REPO / source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            if "vendor" in file.parts or file.suffix in (".pyc", ".mp4", ".ts", ".m3u8"):
                continue
            try:
                found |= set(VARIABLE.findall(file.read_text(encoding="utf-8")))
            except UnicodeDecodeError:
                continue
    return found - NOT_VARIABLES


def test_the_settings_table_is_generated_from_the_settings() -> None:
    assert documented_table(DOC.read_text(encoding="utf-8")) == settings_table(), (
        "docs/configuration.md's settings table is out of date: run "
        "`.venv/bin/python -m tests.unit.test_docs` to regenerate it"
    )


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not missing, f"give these fields a description= in jobs/settings.py: {missing}"


def test_every_roomcast_variable_in_the_code_is_documented() -> None:
    doc = DOC.read_text(encoding="utf-8")
    undocumented = sorted(name for name in code_variables() if f"`{name}`" not in doc)
    assert not undocumented, f"not in docs/configuration.md: {undocumented}"


def test_the_readme_tells_where_the_console_and_the_complete_settings_are() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "/console" in readme
    assert "docs/configuration.md" in readme


def main() -> None:
    """Rewrite docs/configuration.md's settings table from jobs/settings.py."""
    text = DOC.read_text(encoding="utf-8")
    old = documented_table(text)
    new = settings_table()
    if old == new:
        print(f"{DOC.relative_to(REPO)}: settings table up to date")
        return
    DOC.write_text(text.replace(old, new, 1), encoding="utf-8")
    print(f"{DOC.relative_to(REPO)}: settings table rewritten")


if __name__ == "__main__":
    main()
