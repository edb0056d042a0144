import pytest


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """No test ever touches the real user-data directory."""
    data = tmp_path / "icans-data"
    monkeypatch.setenv("ICANS_DATA_DIR", str(data))
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("ICANS_ASSESSOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    return data
