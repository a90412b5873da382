"""Fine-tuned bodies are kept for the newest versions and each current one, and dropped for the
older ones once a job publishes (the job's side: test_refresh.py); a rollback to a version without
its body is refused. Real Redis and the CLI."""
from backend.engines.factory import engine_id
from backend.labeling.calibration import Calibrator
from backend.labeling.head import HeadWeights
from backend.labeling.model_version import ModelVersion
from backend.labeling.prompt import PromptVersion
from backend.labeling.recipe import ControlRecipe
from backend.refinement.body_retention import drop_unneeded_bodies, unneeded_bodies
from backend.settings import Settings
from backend.store.tuned_bodies import TunedBodies
from backend.store.versions import VersionRegistry
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
