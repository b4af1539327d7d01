"""The settings table: every setting can be set from the environment, bad values
are refused by name, unknown ``GEARS_*`` variables are reported, and no other
module reads a ``GEARS_*`` variable from the environment."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from marketplace import create_app
from marketplace.config import BOOTSTRAP, load_settings
from marketplace.settings import (
    BY_NAME,
    SETTINGS,
    ConfigError,
    flag,
    from_environ,
    integer,
    names,
    number,
    text,
    unknown_variables,
)

#: A sample value per parser, and per setting where the value is post-processed.
SAMPLES = {text: "sample", integer: "7", number: "2.5", flag: "off", names: "a, b"}
BY_SETTING = {"DATABASE_URL": "postgresql://gears@db.internal/gears",
              "BASE_URL": "https://gears.example", "VETTING_WORKERS": "3",
              "RATE_LIMIT_STORE": "memory", "SANDBOX_MIN_LEVEL": "standard",
              "ENGINE_VERSION": "2.0.0",
              "ENGINE_URLS": "http://127.0.0.1:8001, http://127.0.0.1:8002/"}
LAYERED = [s for s in SETTINGS if s.name not in BOOTSTRAP]


def sample(name: str) -> str:
    return BY_SETTING.get(name) or SAMPLES[BY_NAME[name].parse]


@pytest.mark.parametrize("name", [s.name for s in LAYERED])
def test_every_setting_is_parsed_from_the_environment(tmp_path, name):
    setting = BY_NAME[name]
    environ = {"GEARS_SECRET_KEY": "k", "GEARS_INSTANCE_PATH": str(tmp_path),
               setting.env: sample(name)}
    settings = load_settings(environ=environ, cwd=tmp_path)
    expected = setting.parse(sample(name))
    assert settings[name] == expected
    assert expected != setting.default


@pytest.mark.parametrize("name", sorted(BOOTSTRAP))
def test_bootstrap_settings_are_read_through_the_table(tmp_path, name):
    assert from_environ(name, {BY_NAME[name].env: str(tmp_path)}) == str(tmp_path)
    assert from_environ(name, {}) is None


def test_instance_path_and_config_file_come_from_the_environment(tmp_path):
    conf = tmp_path / "g.toml"
    conf.write_text('max_upload_mb = 3\n')
    settings = load_settings(environ={"GEARS_CONFIG": str(conf), "GEARS_SECRET_KEY": "k",
                                      "GEARS_INSTANCE_PATH": str(tmp_path / "inst")},
                             cwd=tmp_path)
    assert settings["MAX_UPLOAD_MB"] == 3
    assert settings["INSTANCE_PATH"] == str(tmp_path / "inst")


@pytest.mark.parametrize("name", [s.name for s in LAYERED if s.parse not in (text, names)])
def test_a_bad_value_is_refused_naming_the_variable(tmp_path, name):
    env = BY_NAME[name].env
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={env: "nonsense", "GEARS_SECRET_KEY": "k"}, cwd=tmp_path)
    assert caught.value.message.startswith(f"{env}='nonsense' is not valid")
    assert "must be" in caught.value.message


def test_the_killlist_interval_reaches_the_engine_config(tmp_path):
    settings = load_settings(environ={"GEARS_KILLLIST_INTERVAL_SECONDS": "0.5",
                                      "GEARS_SECRET_KEY": "k"}, cwd=tmp_path)
    assert settings["KILLLIST_INTERVAL_SECONDS"] == 0.5


def test_out_of_range_vetting_workers_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"GEARS_VETTING_WORKERS='33'.*from 0 to 32"):
        load_settings(environ={"GEARS_VETTING_WORKERS": "33", "GEARS_SECRET_KEY": "k"},
                      cwd=tmp_path)


def test_unknown_variables_are_named_with_the_closest_setting():
    found = dict(unknown_variables(["GEARS_KILLIST_INTERVAL_SECONDS", "GEARS_REGISTRY",
                                    "GEARS_TOKEN", "GEARS_CLI_CONFIG", "GEARS_TEST_S3",
                                    "GEARS_DATABASE_URL", "HOME", "GEARS_ZZZ"]))
    assert found == {"GEARS_KILLIST_INTERVAL_SECONDS": "GEARS_KILLLIST_INTERVAL_SECONDS",
                     "GEARS_ZZZ": None}


def test_create_app_warns_of_an_unknown_variable(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GEARS_DATABSE_URL", "sqlite://")
    monkeypatch.setenv("GEARS_REGISTRY", "http://elsewhere")
    with caplog.at_level(logging.WARNING, logger="marketplace.settings"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", "SECRET_KEY": "k",
                    "STORAGE_URL": f"file://{tmp_path / 'b'}",
                    "INSTANCE_PATH": str(tmp_path / "i")})
    warned = [r.getMessage() for r in caplog.records if r.name == "marketplace.settings"]
    assert warned == ["GEARS_DATABSE_URL is not a Gears setting and is ignored; "
                      "did you mean GEARS_DATABASE_URL?"]


def test_every_setting_has_a_doc_a_scope_and_a_parsable_default():
    for s in SETTINGS:
        assert s.doc and s.scope in {"registry", "operator", "engine", "vetting", "runtime"}
        assert s.parse.__doc__, f"{s.name}'s parser says nothing of what it accepts"


# --- nothing else reads GEARS_* from the environment -------------------------------

#: The one module of each package that reads GEARS_* variables: the registry's settings
#: table, and the gears command's (the SDK cannot import the registry's).
SETTINGS_MODULES = {"marketplace/settings.py", "gears_sdk/settings.py"}
ENV_READERS = {"os.environ", "os.getenv", "os.environb", "environ", "getenv"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _gears_key(node: ast.AST | None, constants: dict[str, str]) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.startswith("GEARS_")
    if isinstance(node, ast.JoinedStr) and node.values:
        return _gears_key(node.values[0], constants)
    if isinstance(node, ast.Name):
        return constants.get(node.id, "").startswith("GEARS_")
    return False


def gears_environment_reads(source: str) -> list[int]:
    """Lines of ``source`` that read a ``GEARS_*`` variable from the environment."""
    tree = ast.parse(source)
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                 for t in n.targets if isinstance(t, ast.Name)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = _dotted(node.func)
            reader = func in ENV_READERS or func.rsplit(".", 1)[0] in ENV_READERS
            if reader and node.args and _gears_key(node.args[0], constants):
                lines.append(node.lineno)
        elif (isinstance(node, ast.Subscript) and _dotted(node.value) in ENV_READERS
              and _gears_key(node.slice, constants)):
            lines.append(node.lineno)
    return lines


def test_the_checker_sees_every_form_of_read():
    source = ('import os\nX = "GEARS_X"\nos.environ.get("GEARS_A")\nos.getenv(X)\n'
              'os.environ[f"GEARS_{n}"]\nos.environ.get("HOME")\n')
    assert gears_environment_reads(source) == [3, 4, 5]


def test_no_module_outside_the_settings_table_reads_gears_variables(repo_root):
    offenders = []
    for path in sorted([*(repo_root / "marketplace").rglob("*.py"),
                        *(repo_root / "gears_sdk").rglob("*.py")]):
        rel = path.relative_to(repo_root).as_posix()
        if rel in SETTINGS_MODULES:
            continue
        offenders += [f"{rel}:{n}" for n in gears_environment_reads(path.read_text())]
    assert offenders == [], "read these through marketplace.settings (gears_sdk.settings in " \
        "the SDK): " + ", ".join(offenders)


def test_repo_root_fixture_is_the_checkout(repo_root):
    assert Path(repo_root, "marketplace", "settings.py").is_file()


def config_get_with_default(source: str) -> list[int]:
    """Lines of ``source`` that read a table setting as ``*.config.get(NAME, default)``
    (a second default beside the table's, which the two can disagree on)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and _dotted(node.func).endswith("config.get")
                and node.args and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in BY_NAME):
            lines.append(node.lineno)
    return lines


def test_code_reads_table_settings_without_a_default_of_its_own(repo_root):
    offenders = []
    for path in sorted([*(repo_root / "marketplace").rglob("*.py"),
                        *(repo_root / "gears_sdk").rglob("*.py")]):
        rel = path.relative_to(repo_root).as_posix()
        offenders += [f"{rel}:{n}" for n in config_get_with_default(path.read_text())]
    assert offenders == [], "use app.config[NAME]: " + ", ".join(offenders)


def test_vetting_constants_agree_with_the_table():
    from marketplace.vetting.jobs import STALE_AFTER
    from marketplace.vetting.runner import DEFAULT_BUDGET

    assert BY_NAME["VETTING_JOB_SECONDS"].default == DEFAULT_BUDGET
    assert BY_NAME["VETTING_STALE_SECONDS"].default == STALE_AFTER.total_seconds()


def test_the_engine_hands_the_runtime_its_settings(tmp_path):
    from marketplace.runtime import Runtime
    from marketplace.settings import runtime_options

    config = load_settings(environ={"GEARS_SANDBOX_UID_BASE": "2000000000",
                                    "GEARS_HTTP_ALLOW_PRIVATE_HOSTS": "Db.Internal, 10.0.0.7",
                                    "GEARS_SANDBOX_MIN_LEVEL": "dev-unsafe",
                                    "GEARS_SECRET_KEY": "k"}, cwd=tmp_path)
    options = runtime_options(config)
    assert options == {"min_level": "dev-unsafe", "uid_base": 2_000_000_000,
                       "allow_private_hosts": frozenset({"db.internal", "10.0.0.7"})}
    runtime = Runtime(**options)
    try:
        assert (runtime.uid_base, runtime.min_level) == (2_000_000_000, "dev-unsafe")
        assert runtime.allow_private_hosts == options["allow_private_hosts"]
    finally:
        runtime.close()


def test_vetting_falls_back_to_the_engines_minimum_level(tmp_path):
    from flask import Flask

    from marketplace.vetting.worker import sandbox_options

    app = Flask("t")
    app.config.update(load_settings(environ={"GEARS_SANDBOX_MIN_LEVEL": "standard",
                                             "GEARS_SECRET_KEY": "k"}, cwd=tmp_path))
    assert sandbox_options(app).min_level == "standard"
    app.config["VETTING_SANDBOX_MIN_LEVEL"] = "dev-unsafe"
    assert sandbox_options(app).min_level == "dev-unsafe"


def test_engine_version_is_the_package_version_unless_set(tmp_path):
    import gears_sdk
    from marketplace.settings import engine_version

    assert gears_sdk.__version__ == gears_sdk.ENGINE_VERSION
    base = {"GEARS_SECRET_KEY": "k", "GEARS_INSTANCE_PATH": str(tmp_path)}
    assert engine_version(load_settings(environ=base, cwd=tmp_path)) == gears_sdk.__version__
    moved = load_settings(environ={**base, "GEARS_ENGINE_VERSION": "2.1.0"}, cwd=tmp_path)
    assert engine_version(moved) == "2.1.0"
    with pytest.raises(ConfigError, match="GEARS_ENGINE_VERSION"):
        load_settings(environ={**base, "GEARS_ENGINE_VERSION": "two"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="ENGINE_VERSION"):
        engine_version({"ENGINE_VERSION": "2.x"})
