"""Every `verify all` in the suite keeps its cells in one cache of the test session, not
in the checkout's .kl_verify_cache/ (a test asks for --fresh where it needs a computation)."""
import pytest


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    from verify import cache

    previous = cache.DEFAULT_DIRECTORY
    cache.DEFAULT_DIRECTORY = str(tmp_path_factory.mktemp("kl_verify_cache"))
    yield
    cache.DEFAULT_DIRECTORY = previous
