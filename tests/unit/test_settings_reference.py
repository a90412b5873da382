"""docs/configuration.md's tables and .env.example are generated from the Settings fields and
are up to date; every setting is documented once with a meaning and a section."""
import re

from backend import settings_reference
from backend.settings import SECTIONS, Settings, known_variables, variables


def test_the_reference_and_env_example_are_up_to_date():
    assert settings_reference.stale() == [], "run: python -m backend.settings_reference --write"


def test_every_setting_has_a_section_and_a_meaning_and_appears_once():
    docs = settings_reference.DOCS.read_text()
    example = settings_reference.ENV_EXAMPLE.read_text()
    for name, info in Settings.model_fields.items():
        assert (info.json_schema_extra or {}).get("section") in SECTIONS, name
        assert len(info.description or "") > 10, name
        variable = variables(name)[0]
        assert docs.count(f"| `{variable}` |") == 1, variable
        assert example.count(f"\n# {variable}=") == 1, variable
    assert {"WORKERS", "THREADS", "LABEL_STUDIO_HOST", "ENV_FILE"} <= known_variables()


def test_a_changed_default_makes_the_reference_stale(monkeypatch):
    docs = settings_reference.DOCS.read_text()
    monkeypatch.setattr(Settings.model_fields["refine_folds"], "default", 7)
    assert "| `REFINE_FOLDS` | `7` |" in settings_reference.docs_text(docs)
    assert "# REFINE_FOLDS=7" in settings_reference.env_example()
    assert settings_reference.DOCS in settings_reference.stale()


def test_the_env_example_is_a_valid_env_file_at_the_defaults(tmp_path):
    """Uncommenting every line of .env.example gives the defaults back."""
    lines = [line[2:] for line in settings_reference.env_example().splitlines()
             if re.match(r"# [A-Z][A-Z0-9_]+=", line)]
    assert len(lines) == len(Settings.model_fields)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    assert Settings.from_env({}, env_file=path) == Settings.from_env({})
