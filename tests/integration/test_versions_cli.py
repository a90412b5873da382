"""`versions show` and `versions diff` say what a stored version serves and what changed, read from
real Redis through the CLI; the listing and --rollback keep working beside them."""
import json

from click.testing import CliRunner

from backend.cli import main
from backend.engines.factory import engine_id
from backend.labeling.calibration import Calibrator
from backend.labeling.head import HeadWeights
from backend.labeling.label_config import parse_label_config
from backend.labeling.model_version import ModelVersion
from backend.labeling.prompt import Demo, PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.settings import Settings
from backend.store.versions import VersionRegistry

PROJECT = 63
CONFIG = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
          '<Choice value="spam"/><Choice value="ham"/></Choices></View>')


def publish(redis_conn, tmp_path, recipe: ControlRecipe, kind: str, metrics: dict) -> ModelVersion:
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path)})
    registry = VersionRegistry(redis_conn, engine_id(settings), tmp_path, ModelVersion)
    return registry.publish(PROJECT, ModelVersion(label="", lineage=parse_label_config(CONFIG).config_hash,
                                                  controls={"label": recipe}, kind=kind, metrics=metrics,
                                                  gt_count=40, trained_on=(1, 2, 3)))


def cli(*args: str):
    return CliRunner().invoke(main, ["versions", "--project", str(PROJECT), *args])


def test_show_and_diff_say_what_a_version_learnt(redis_conn, redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    demos = (Demo("WIN a prize now", ("spam",)), Demo("lunch at noon?", ("ham",)))
    v1 = publish(redis_conn, tmp_path, ControlRecipe(PromptVersion("4-shot", demos=demos),
                                                     Calibrator((0.3, -0.3), 1.0, "fitted")),
                 "label:4-shot+calibrated", {"label": {"macro_f1": 0.81}})
    head = HeadWeights(((0.1,) * 384, (-0.1,) * 384), (0.0, 0.0), weight_llm=0.0, temperature=0.8)
    v2 = publish(redis_conn, tmp_path, ControlRecipe(PromptVersion("4-shot", demos=demos[:1]), None, head),
                 "label:head", {"label": {"macro_f1": 0.9}})

    shown = cli("show", "1")
    assert shown.exit_code == 0, shown.output
    assert v1.label in shown.output and "'WIN a prize now' → spam" in shown.output
    assert "fitted: bias per label +0.30, -0.30" in shown.output and "head: none" in shown.output
    facts = json.loads(cli("show", v2.label, "--json").output)
    assert facts["controls"]["label"]["head"].endswith("LLM weight 0.00 (no LLM pass at serving), temperature 0.80")
    assert facts["ground truth"] == "40 labelled tasks (3 used to build it)"

    changes = json.loads(cli("diff", "v1", "v2", "--json").output)
    label = changes["changed"]["label"]
    assert label["demonstrations"] == {"added": [], "removed": ["'lunch at noon?' → ham"]}
    assert label["calibration"][1] == "content-free, fitted at serving time" and label["head"][0] == "none"
    assert "prompt" not in label and "instructions" not in label  # unchanged facts are left out
    assert changes["metrics"][v2.label] == {"label": {"macro_f1": 0.9}}
    text = cli("diff", "v0", "v2").output
    assert f"{v1.label.rsplit('.', 1)[0]}.v0 → {v2.label}" in text and "demonstrations: + 'WIN a prize now' → spam" in text

    missing = cli("show", "v7")
    assert missing.exit_code == 2 and "has no version 'v7'" in missing.output
    listed = cli()
    assert listed.exit_code == 0 and f"* {v2.label}" in listed.output
    assert cli("--rollback", "v1").output.strip().endswith(v1.label)


def test_the_same_facts_over_http(redis_conn, redis_url, tmp_path):
    from backend.app import create_app
    from backend.engines.scripted import ScriptedEngine

    v1 = publish(redis_conn, tmp_path, ControlRecipe(PromptVersion("plain", instructions="Spam or ham?")),
                 "label:plain", {"label": {"macro_f1": 0.7}})
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL": redis_url})
    client = create_app(settings, engine_factory=ScriptedEngine, redis_conn=redis_conn, start_engine=False).test_client()
    body = client.get(f"/versions/{v1.label}").json
    assert body["project"] == PROJECT and body["model_version"] == v1.label and body["report"] is None
    assert body["controls"]["label"]["instructions"] == "Spam or ham?"
    assert body["metrics"] == {"label": {"macro_f1": 0.7}}
    assert client.get(f"/versions/{v1.label}?project={PROJECT + 1}").status_code == 404
    missing = client.get("/versions/nope")
    assert missing.status_code == 404 and missing.json["field"] == "label"
    assert client.get(f"/versions/{v1.label}?project=x").json["field"] == "project"
