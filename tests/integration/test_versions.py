"""Version lineages in a real Redis: versions stored under the old raw-XML hash of a config stay
current once lineages are named by what the config serves, through later cosmetic edits too."""
import uuid

import pytest

from backend.app import create_app
from backend.engines.scripted import ScriptedEngine
from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.prompt import PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.settings import Settings
from backend.store.ground_truth import GoldItem, GroundTruthStore
from backend.store.versions import VersionRegistry

CONFIG = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
          '<Choice value="spam"/><Choice value="ham"/></Choices></View>')
RESTYLED = ('<View>\n  <Header value="Is it spam?"/>\n  <Text value="$text" name="text"/>\n'
            '  <View style="padding: 8px"><Choices toName="text" name="label">'
            '<Choice value="spam"/><Choice value="ham"/></Choices></View>\n</View>')
RELABELLED = CONFIG.replace('"ham"', '"not spam"')


def _project() -> int:
    return 70_000 + int(uuid.uuid4().int % 10_000)


def _legacy_version(registry: VersionRegistry, project: int, config: str, name: str = "legacy") -> ModelVersion:
    """A version as the registry stored it when lineages were the raw-XML hash."""
    task = parse_label_config(config)
    recipe = ControlRecipe(PromptVersion(name=name, instructions=f"{name} instructions"))
    return registry.publish(project, ModelVersion(label="", lineage=task.legacy_hash, controls={"label": recipe}))


@pytest.fixture
def registry(redis_conn, tmp_path):
    return VersionRegistry(redis_conn, "scripted", tmp_path, ModelVersion)


def test_a_version_published_under_the_legacy_hash_is_still_current_after_the_switch(registry):
    project, task = _project(), parse_label_config(CONFIG)
    old = _legacy_version(registry, project, CONFIG)
    assert old.label == f"scripted.{task.legacy_hash[:6]}.v1" and task.legacy_hash != task.config_hash
    assert registry.current(project, task.config_hash).number == 0  # not adopted yet: nothing names the legacy hash

    served = registry.current(project, task.config_hash, task.legacy_hash)
    assert served.label == old.label and served.recipe("label").prompt.name == "legacy"

    restyled = parse_label_config(RESTYLED)  # a cosmetic edit after the switch: another legacy hash, no versions
    assert restyled.config_hash == task.config_hash and restyled.legacy_hash != task.legacy_hash
    assert registry.current(project, restyled.config_hash, restyled.legacy_hash).label == old.label
    assert registry.current(project, restyled.config_hash).label == old.label  # the adoption is kept

    draft = ModelVersion(label="", lineage=restyled.config_hash, controls={"label": ControlRecipe(PromptVersion(name="next"))})
    new = registry.publish(project, draft)  # what a refinement job publishes: it continues the adopted lineage
    assert (new.number, new.label, new.lineage) == (2, f"scripted.{task.legacy_hash[:6]}.v2", task.legacy_hash)
    assert registry.current(project, restyled.config_hash, restyled.legacy_hash).label == new.label
    assert [v.label for v in registry.history(project, task.config_hash)] == [
        f"scripted.{task.legacy_hash[:6]}.v0", old.label, new.label]
    assert registry.rollback(project, task.config_hash, "v1").label == old.label
    assert registry.current(project, restyled.config_hash, restyled.legacy_hash).label == old.label
    assert registry.lineages(project) == [task.legacy_hash]


def test_a_changed_config_starts_at_v0_beside_adopted_versions(registry):
    project = _project()
    _legacy_version(registry, project, CONFIG)
    task = parse_label_config(CONFIG)
    registry.current(project, task.config_hash, task.legacy_hash)
    relabelled = parse_label_config(RELABELLED)
    version = registry.current(project, relabelled.config_hash, relabelled.legacy_hash)
    assert version.number == 0 and version.label == f"scripted.{relabelled.config_hash[:6]}.v0"


def test_a_lineage_with_versions_of_its_own_does_not_adopt_legacy_ones(registry):
    project, task = _project(), parse_label_config(CONFIG)
    assert registry.current(project, task.config_hash, task.legacy_hash).label == f"scripted.{task.config_hash[:6]}.v0"
    own = registry.publish(project, ModelVersion(label="", lineage=task.config_hash))
    assert own.label == f"scripted.{task.config_hash[:6]}.v1"
    _legacy_version(registry, project, CONFIG)  # cannot happen after the switch, and must not win if it did
    assert registry.current(project, task.config_hash, task.legacy_hash).label == own.label


def test_setup_and_predict_serve_the_legacy_version_through_a_cosmetic_edit(redis_conn, redis_url, tmp_path):
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url})
    app = create_app(settings, engine_factory=ScriptedEngine, redis_conn=redis_conn)
    project = _project()
    old = _legacy_version(app.extensions["llmlb.versions"], project, CONFIG)
    client = app.test_client()
    for schema in (CONFIG, RESTYLED):
        assert client.post("/setup", json={"project": f"{project}.1", "schema": schema}).json["model_version"] == old.label
    r = client.post("/predict", json={"project": f"{project}.1", "label_config": RESTYLED,
                                      "tasks": [{"id": 1, "data": {"text": "spam: win a prize"}}]})
    assert r.status_code == 200 and r.json["results"][0]["model_version"] == old.label
    relabelled = client.post("/setup", json={"project": f"{project}.1", "schema": RELABELLED}).json["model_version"]
    assert relabelled.endswith(".v0") and relabelled != old.label


def test_a_refinement_job_continues_the_legacy_lineage(redis_conn, redis_url, tmp_path):
    from backend.engines.factory import engine_id
    from backend.refinement.job import run_refinement

    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url, "REFINE_REASONING_SAMPLES": "0",
                                  "REFINE_REWRITE_ROUNDS": "0", "REFINE_MAX_SHOTS": "0", "REFINE_TUNE_SECONDS": "0"})
    project = _project()
    registry = VersionRegistry(redis_conn, engine_id(settings), tmp_path, ModelVersion)
    old = _legacy_version(registry, project, CONFIG)
    store = GroundTruthStore(redis_conn, project)
    store.set_label_config(CONFIG)  # the config the legacy version was refined for
    for i in range(40):  # the scripted LLM reads the label word in the text, which is always the wrong one
        spam = i % 2 == 0
        text = f"ham: win a free prize now, call {i}" if spam else f"spam: see you at lunch at {i}"
        store.upsert(GoldItem(i + 1, {"text": text}, {"label": ["spam" if spam else "ham"]}, i + 1,
                              f"2026-01-{i % 28 + 1:02d}"))

    out = run_refinement(settings, redis_conn, project, engine=ScriptedEngine())

    legacy = parse_label_config(CONFIG).legacy_hash
    assert out["current"] == old.label
    assert out["status"] == "published" and out["model_version"] == registry.label(legacy, 2), out
    assert registry.current(project, parse_label_config(RESTYLED).config_hash).parent == old.label
    assert registry.lineages(project) == [legacy]
