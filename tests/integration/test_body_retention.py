"""Fine-tuned bodies are kept for the newest versions and each current one, and dropped for the
older ones once a job publishes; a rollback to a version without its body is refused. Real Redis,
the CLI, and a job on the embedded model."""
import numpy as np

from backend.engines.factory import engine_id
from backend.labeling.calibration import Calibrator
from backend.labeling.head import Embedder, HeadWeights
from backend.labeling.model_version import ModelVersion
from backend.labeling.prompt import PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.refinement.body_retention import drop_unneeded_bodies, unneeded_bodies
from backend.refinement.candidates.embedding_head import train_head
from backend.refinement.job import run_refinement
from backend.settings import Settings
from backend.store.tuned_bodies import TunedBodies
from backend.store.versions import VersionRegistry
from tests.annotated_project import annotate
from tests.integration.test_refresh import BAD_TEMPERATURE, DATA, FITTED_ON
from tests.integration.test_refresh import _only_a_refresh_can_publish
from tests.integration.test_versions_cli import PROJECT, cli, publish

LINEAGE_B = "b" * 16


def _tuned(body: str | None) -> ControlRecipe:
    head = HeadWeights(((0.1,) * 4, (0.0,) * 4), (0.0, 0.0), weight_llm=0.5,
                       **({"embedder": f"tuned:{body}"} if body else {}))
    return ControlRecipe(PromptVersion(), Calibrator.identity(2), head)


def _registry(redis_conn, tmp_path) -> VersionRegistry:
    return VersionRegistry(redis_conn, engine_id(Settings.from_env({"MODEL_DIR": str(tmp_path)})), tmp_path,
                           ModelVersion)


def test_only_bodies_that_no_recent_or_current_version_reads_are_unneeded(redis_conn, tmp_path):
    registry = _registry(redis_conn, tmp_path)
    bodies = TunedBodies(redis_conn)
    # v1..v6: bodies a, a (a refit), b, none, c, d; the newest 3 are v4..v6
    for body in ("a", "a", "b", None, "c", "d"):
        publish(redis_conn, tmp_path, _tuned(body), "label:tuned-head", {})
        if body:
            bodies.save(f"tuned:{body}", 3, body.encode())
    assert unneeded_bodies(registry, PROJECT, keep=3) == {"tuned:a", "tuned:b"}
    assert unneeded_bodies(registry, PROJECT, keep=6) == set()
    lineage = registry.lineages(PROJECT)[0]
    registry.rollback(PROJECT, lineage, "v3")  # the current version keeps its body, however old
    assert unneeded_bodies(registry, PROJECT, keep=3) == {"tuned:a"}
    # another label config's recent version still reads a: kept
    registry.publish(PROJECT, ModelVersion(label="", lineage=LINEAGE_B, controls={"label": _tuned("a")}))
    assert unneeded_bodies(registry, PROJECT, keep=3) == set()

    registry.rollback(PROJECT, lineage, "v6")
    redis_conn.delete(*redis_conn.keys(f"llmlb:project:{PROJECT}:versions:{LINEAGE_B}"))
    assert drop_unneeded_bodies(registry, bodies, PROJECT, keep=3) == ["tuned:a", "tuned:b"]
    assert [bodies.has(f"tuned:{n}") for n in "abcd"] == [False, False, True, True]


def test_a_rollback_to_a_version_whose_body_was_dropped_is_refused(redis_conn, redis_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    bodies = TunedBodies(redis_conn)
    for body in ("a", "b"):
        publish(redis_conn, tmp_path, _tuned(body), "label:tuned-head", {})
        bodies.save(f"tuned:{body}", 3, body.encode())
    bodies.drop(["tuned:a"])
    refused = cli("--rollback", "v1")
    assert refused.exit_code != 0
    assert "cannot be served again" in refused.output and "tuned:a" in refused.output, refused.output
    assert cli("--rollback", "v2").exit_code == 0


def test_a_job_that_publishes_drops_the_bodies_only_older_versions_read(engine, redis_conn, redis_url, tmp_path):
    """TUNED_BODIES_KEPT=1: once the job's refresh is published, the fine-tuned body of the
    version before the current one is no longer needed."""
    settings = _only_a_refresh_can_publish(redis_url, tmp_path).with_overrides(tuned_bodies_kept=1)
    label_task, events = annotate(redis_conn, DATA, 47)
    registry = VersionRegistry(redis_conn, engine_id(settings), settings.model_dir, ModelVersion)
    bodies = TunedBodies(redis_conn)
    old = ModelVersion(label="", lineage=label_task.config_hash, kind="label:tuned-head", gt_count=FITTED_ON,
                       controls={"label": ControlRecipe(PromptVersion(), None, HeadWeights(
                           ((0.0,) * 384,) * 2, (0.0, 0.0), weight_llm=0.0, embedder="tuned:old"))})
    registry.publish(47, old)
    bodies.save("tuned:old", 3, b"tensors")
    gold = np.array(DATA.gold)
    coef, intercept = train_head(Embedder().encode(list(DATA.texts[:FITTED_ON])), gold[:FITTED_ON], len(DATA.labels))
    head = HeadWeights(tuple(map(tuple, coef.tolist())), tuple(intercept.tolist()), weight_llm=0.0,
                       temperature=BAD_TEMPERATURE)
    registry.publish(47, ModelVersion(
        label="", lineage=label_task.config_hash, kind="label:head", gt_count=FITTED_ON,
        controls={"label": ControlRecipe(PromptVersion(), Calibrator.identity(len(DATA.labels)), head)},
        trained_on=tuple(e["task"]["id"] for e in events[:FITTED_ON])))
    assert unneeded_bodies(registry, 47, keep=1) == {"tuned:old"}  # not dropped before a job publishes

    out = run_refinement(settings, redis_conn, 47, engine=engine)

    assert out["status"] == "refreshed" and out["dropped_bodies"] == ["tuned:old"], out
    assert not bodies.has("tuned:old")
