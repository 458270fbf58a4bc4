"""``vaelab serve``: loopback by default, a warning for any other host, user errors as one line."""

import pytest

from vaelab.cli import main
from vaelab.cli.serve import is_loopback


@pytest.fixture
def saved_model(tmp_path):
    from vaelab.models import VAE, ModelConfig

    cfg = ModelConfig.model_validate({"image_shape": (1, 8, 8), "latent_dim": 2})
    return VAE(cfg).save_pretrained(tmp_path / "model")


@pytest.fixture
def uvicorn_calls(monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    return calls


def test_is_loopback():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org"))


def test_serves_on_localhost_by_default(saved_model, uvicorn_calls, capsys):
    assert main(["serve", str(saved_model), str(saved_model)]) == 0
    ((app, kwargs),) = uvicorn_calls
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8000
    assert list(app.state.models) == ["model", "model-2"]  # the same model twice gets two ids
    err = capsys.readouterr().err
    assert "http://127.0.0.1:8000/" in err and "warning" not in err


def test_other_host_warns(saved_model, uvicorn_calls, capsys):
    assert main(["serve", str(saved_model), "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert uvicorn_calls[0][1]["host"] == "0.0.0.0"
    assert "warning: binding 0.0.0.0" in capsys.readouterr().err


def test_user_errors(saved_model, tmp_path, uvicorn_calls, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", str(saved_model), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert uvicorn_calls == []
