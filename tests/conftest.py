import pytest

pytest_plugins = ["tests.pgserver"]  # a real PostgreSQL for the ward log's tests


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """No test ever touches the real user-data directory."""
    data = tmp_path / "icans-data"
    monkeypatch.setenv("COLUMNS", "100")
    # None of the workstation's settings leaks in (a ward's URL, its protocol, ICANS_DEBUG...):
    # every ICANS_ variable is cleared, so one added later cannot be forgotten here; only the
    # test run's own server (ICANS_TEST_*) stays.
    import os

    for name in [n for n in os.environ if n.startswith("ICANS_")]:
        if not name.startswith("ICANS_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("ICANS_DATA_DIR", str(data))
    return data
