"""Settings read from the environment and checked at start-up."""
import pytest

from backend.errors import ConfigurationError
from backend.settings import Settings


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PREANNOTATE_ON_IMPORT": "true"}, "LABEL_STUDIO_URL"),
        ({"PREANNOTATE_ON_IMPORT": "maybe"}, "true or false"),
        ({"PREANNOTATE_BATCH": "0"}, "at least 1"),
    ],
)
def test_preannotate_settings_are_validated(env, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


def test_rewrite_budget_settings_are_parsed_and_checked():
    s = Settings.from_env({"REFINE_REWRITE_ROUNDS": "0", "REFINE_REWRITE_PROPOSALS": "6",
                           "REFINE_REWRITE_BEAM": "3", "REFINE_REWRITE_MAX_CALLS": "500"})
    assert (s.refine_rewrite_rounds, s.refine_rewrite_proposals, s.refine_rewrite_beam,
            s.refine_rewrite_max_calls) == (0, 6, 3, 500)
    from backend.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="REFINE_REWRITE_BEAM"):
        Settings.from_env({"REFINE_REWRITE_BEAM": "0"})


def test_openai_settings_are_read_and_checked():
    s = Settings.from_env({"LLM_BACKEND": "openai", "OPENAI_BASE_URL": "http://h:8000/v1/", "LLM_MODEL": "m",
                           "OPENAI_SERVER_KIND": "vLLM", "OPENAI_TIMEOUT": "12.5", "OPENAI_MAX_RETRIES": "0",
                           "OPENAI_CONCURRENCY": "8", "LLM_PRICE_PER_1K_PROMPT": "0.15",
                           "TEACHER_BASE_URL": "https://api.openai.com/v1", "TEACHER_MODEL": "gpt-4o",
                           "TEACHER_API_KEY": "k"})
    assert (s.openai_base_url, s.openai_server_kind, s.openai_timeout_s, s.openai_max_retries,
            s.openai_concurrency) == ("http://h:8000/v1", "vllm", 12.5, 0, 8)
    assert s.llm_price_per_1k_prompt == 0.15 and s.teacher_enabled and s.teacher_model == "gpt-4o"
    with pytest.raises(ConfigurationError, match="OPENAI_BASE_URL"):
        Settings.from_env({"LLM_BACKEND": "openai"})
    with pytest.raises(ConfigurationError, match="OPENAI_CONCURRENCY"):
        Settings.from_env({"LLM_BACKEND": "openai", "OPENAI_BASE_URL": "http://h/v1", "OPENAI_CONCURRENCY": "0"})
    with pytest.raises(ConfigurationError, match="OPENAI_SERVER_KIND"):
        Settings.from_env({"OPENAI_SERVER_KIND": "tgi"})


PASS = "a-password-of-24-chars!!"
SECRET = "Tq3v_9xZ-Lr2Wm8kPb4N"
GUARDS = {"BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": PASS, "WEBHOOK_SECRET": SECRET}


@pytest.mark.parametrize("host", ["", "127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_a_loopback_host_starts_with_nothing_set(host):
    settings = Settings.from_env({"HOST": host})
    assert settings.host == (host or "127.0.0.1")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "backend.example.org"])
def test_a_public_host_without_auth_or_webhook_guard_is_refused_naming_what_to_set(host):
    with pytest.raises(ConfigurationError) as err:
        Settings.from_env({"HOST": host})
    assert err.value.field == "HOST"
    for name in ("BASIC_AUTH_USER", "BASIC_AUTH_PASS", "WEBHOOK_SECRET", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY",
                 "AUTH_BY_PROXY", "at least 16 characters"):
        assert name in err.value.message


@pytest.mark.parametrize(
    "env, named, not_named",
    [
        ({"WEBHOOK_SECRET": SECRET}, "BASIC_AUTH_USER", "WEBHOOK_SECRET"),
        ({"LABEL_STUDIO_URL": "http://ls:8080", "LABEL_STUDIO_API_KEY": "k"}, "BASIC_AUTH_USER", "WEBHOOK_SECRET"),
        ({"BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": PASS}, "WEBHOOK_SECRET", "BASIC_AUTH_USER"),
        # the Label Studio API reconciles ground truth only with both the address and the key
        ({"BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": PASS, "LABEL_STUDIO_URL": "http://ls:8080"},
         "LABEL_STUDIO_API_KEY", "BASIC_AUTH_USER"),
    ],
)
def test_a_public_host_needs_both_basic_auth_and_a_webhook_guard(env, named, not_named):
    with pytest.raises(ConfigurationError) as err:
        Settings.from_env({"HOST": "0.0.0.0", **env})
    assert named in err.value.message and not_named not in err.value.message


@pytest.mark.parametrize(
    "env",
    [
        GUARDS,
        {"BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": PASS, "LABEL_STUDIO_URL": "http://ls:8080",
         "LABEL_STUDIO_API_KEY": "k"},
        {"AUTH_BY_PROXY": "true"},
    ],
)
def test_a_public_host_starts_when_guarded_or_behind_an_authenticating_proxy(env):
    settings = Settings.from_env({"HOST": "0.0.0.0", **env})
    assert settings.host == "0.0.0.0"
    assert settings.auth_by_proxy == (env.get("AUTH_BY_PROXY") == "true")


def test_auth_by_proxy_is_a_boolean():
    with pytest.raises(ConfigurationError, match="AUTH_BY_PROXY must be true or false"):
        Settings.from_env({"AUTH_BY_PROXY": "nginx"})


def test_an_override_of_the_host_is_checked_like_HOST():
    """`serve --host 0.0.0.0` goes through with_overrides, not from_env."""
    settings = Settings.from_env({})
    with pytest.raises(ConfigurationError, match="HOST=0.0.0.0 is not a loopback address"):
        settings.with_overrides(host="0.0.0.0")
    assert Settings.from_env(GUARDS).with_overrides(host="0.0.0.0").host == "0.0.0.0"


@pytest.mark.parametrize("name", ["BASIC_AUTH_PASS", "WEBHOOK_SECRET"])
def test_a_short_secret_is_refused_by_name_without_echoing_it(name):
    short = "Sh0rt-Secret-15"  # 15 characters
    env = {name: short, **({"BASIC_AUTH_USER": "ls"} if name == "BASIC_AUTH_PASS" else {})}
    with pytest.raises(ConfigurationError) as err:
        Settings.from_env(env)
    assert err.value.field == name
    assert f"{name} must be at least 16 characters long, it has 15" in err.value.message
    assert short not in err.value.message and short not in str(err.value)
    assert getattr(Settings.from_env({**env, name: short + "x"}), name.lower()) == short + "x"


def test_the_webhook_secret_is_a_url_safe_path_segment():
    assert Settings.from_env({"WEBHOOK_SECRET": f"/{SECRET}/"}).webhook_secret == SECRET
    for bad in ("has/a-slash-inside-it", "percent%2Fencoded-value", "spaces are not allowed here"):
        with pytest.raises(ConfigurationError, match="only letters, digits and - _ . ~") as err:
            Settings.from_env({"WEBHOOK_SECRET": bad})
        assert bad not in err.value.message


def test_secrets_are_not_in_the_repr():
    secrets = {"BASIC_AUTH_PASS": PASS, "WEBHOOK_SECRET": SECRET, "LABEL_STUDIO_API_KEY": "ls-token-0123456789abcdef",
               "OPENAI_API_KEY": "sk-openai-key-0123456789", "TEACHER_API_KEY": "sk-teacher-key-0123456789"}
    settings = Settings.from_env({**secrets, "BASIC_AUTH_USER": "ls", "LABEL_STUDIO_URL": "http://ls:8080",
                                  "TEACHER_BASE_URL": "https://t/v1", "TEACHER_MODEL": "m"})
    assert settings.teacher_api_key == secrets["TEACHER_API_KEY"] and settings.webhook_secret == SECRET
    for text in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert "basic_auth_user='ls'" in text and "http://ls:8080" in text
        for value in secrets.values():
            assert value not in text


def test_webhook_max_bytes_is_read_and_bounded():
    assert Settings.from_env({}).webhook_max_bytes == 1024 * 1024
    assert Settings.from_env({"WEBHOOK_MAX_BYTES": "4194304"}).webhook_max_bytes == 4 * 1024 * 1024
    for bad in ("1000", str(65 * 1024 * 1024)):
        with pytest.raises(ConfigurationError, match="WEBHOOK_MAX_BYTES must be between"):
            Settings.from_env({"WEBHOOK_MAX_BYTES": bad})


def test_a_dotenv_file_is_read_below_the_environment(tmp_path):
    env_file = tmp_path / "settings.env"
    env_file.write_text("REFINE_MIN_NEW=3\nPORT=9191\nLOG_LEVEL=debug\n# a comment\nRQ_QUEUE_NAME=from-file\n")
    s = Settings.from_env({"PORT": "9292", "RQ_QUEUE_NAME": "  "}, env_file=env_file)
    assert (s.refine_min_new, s.port, s.log_level) == (3, 9292, "DEBUG")
    assert s.rq_queue_name == "from-file"  # a blank variable counts as unset, so the file's value holds


def test_the_process_environment_points_at_its_env_file(tmp_path, monkeypatch):
    (tmp_path / "other.env").write_text("REFINE_FOLDS=7\n")
    monkeypatch.setenv("ENV_FILE", str(tmp_path / "other.env"))
    monkeypatch.delenv("REFINE_FOLDS", raising=False)
    assert Settings.from_env().refine_folds == 7
    monkeypatch.setenv("ENV_FILE", str(tmp_path / "missing.env"))  # no file: no error, the defaults
    assert Settings.from_env().refine_folds == 5


def test_a_mapping_reads_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("REFINE_FOLDS", "9")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("REFINE_MAX_SHOTS=2\n")
    s = Settings.from_env({})
    assert (s.refine_folds, s.refine_max_shots) == (5, 8)


def test_a_typo_in_the_env_file_is_reported(tmp_path, caplog):
    env_file = tmp_path / ".env"
    env_file.write_text("REFINE_MINNEW=3\nWORKERS=2\n")
    with caplog.at_level("WARNING", logger="backend.settings"):
        s = Settings.from_env({}, env_file=env_file)
    assert s.web_workers == 2
    assert "REFINE_MINNEW" in caplog.text and "WORKERS" not in caplog.text.replace("REFINE_MINNEW", "")


@pytest.mark.parametrize("env, field, value", [
    ({"WORKERS": "3"}, "web_workers", 3),
    ({"THREADS": "2"}, "web_threads", 2),
    ({"LABEL_STUDIO_HOST": "http://ls:8080/"}, "label_studio_url", "http://ls:8080"),
    ({"WEB_WORKERS": "4", "WORKERS": "3"}, "web_workers", 4),  # our own name wins over the alias
])
def test_the_label_studio_ml_backend_names_are_accepted(env, field, value):
    assert getattr(Settings.from_env(env), field) == value


@pytest.mark.parametrize("env, message", [
    ({"PORT": "http"}, "PORT must be an integer, got 'http'"),
    ({"WORKERS": "many"}, "WORKERS must be an integer, got 'many'"),
    ({"REFINE_ALPHA": "5%"}, "REFINE_ALPHA must be a number, got '5%'"),
    ({"AUTH_BY_PROXY": "maybe"}, "AUTH_BY_PROXY must be true or false, got 'maybe'"),
    ({"CALIBRATION": "Platt"}, "CALIBRATION must be one of contextual, none, got 'platt'"),
])
def test_a_malformed_value_is_one_line_naming_the_variable(env, message):
    with pytest.raises(ConfigurationError) as err:
        Settings.from_env(env)
    assert err.value.message == message
    assert err.value.field == next(iter(env))


def test_overrides_are_validated_and_secrets_stay_out_of_repr():
    s = Settings.from_env({"BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": PASS, "WEBHOOK_SECRET": SECRET,
                           "LABEL_STUDIO_API_KEY": "the-key", "OPENAI_API_KEY": "sk-x", "TEACHER_API_KEY": "tk"})
    assert s.with_overrides(port=9000).port == 9000
    with pytest.raises(ConfigurationError, match="PORT must be an integer"):
        s.with_overrides(port="x")
    with pytest.raises(ConfigurationError, match="unknown settings: colour"):
        s.with_overrides(colour="red")
    text = repr(s) + str(s)
    for secret in (PASS, SECRET, "the-key", "sk-x", "'tk'"):
        assert secret not in text
    with pytest.raises(Exception):
        s.port = 1  # frozen
