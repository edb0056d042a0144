import pytest

pytest_plugins = ["tests.pgserver"]  # a real PostgreSQL for the ward log's tests


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """No test ever touches the real user-data directory."""
    data = tmp_path / "icans-data"
    monkeypatch.setenv("ICANS_DATA_DIR", str(data))
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("ICANS_ASSESSOR", raising=False)
    monkeypatch.delenv("ICANS_DATABASE_URL", raising=False)  # a ward's URL never leaks in
    monkeypatch.delenv("ICANS_PATIENT_SYSTEM", raising=False)
    monkeypatch.delenv("ICANS_LOCK_TIMEOUT", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    return data
