"""Every `verify all` in the suite keeps its cells in one cache of the test session, not
in the checkout's .kl_verify_cache/ (a test asks for --fresh where it needs a computation).

The 16-bit sweeps of a test run over ``PART_OF_THE_DOMAIN`` unless the test is marked
``whole_domain``: the gate (`verify all`) sweeps the whole of [-60, 0] for every catalog
entry, and the suite recomputes two of those sweeps and compares them with the committed
reports (tests/test_all.py).  The part holds every kind of failure the tests look for:
cancellation near t = 0 (adjacent values), float16's overflow of exp beyond t = 11.09,
verl's clamp at |t| = 20 not reached.  (A test in a subprocess sweeps the whole.)

NumPy's loops are the ones ``verify all`` uses (verify/core/reproducible.py), set before
NumPy loads here, so that the suite compares the committed reports on any machine."""
from verify.core.reproducible import pin_numpy_dispatch

assert pin_numpy_dispatch(), "numpy was loaded before tests/conftest.py: its AVX-512 loops stay on"

import pytest  # noqa: E402

PART_OF_THE_DOMAIN = (-16.0, -2.0 ** -6)


def pytest_configure(config):
    config.addinivalue_line("markers", "whole_domain: 16-bit sweeps over the whole of [-60, 0]")


@pytest.fixture(autouse=True)
def _part_of_the_sixteen_bit_domain(request, monkeypatch):
    if request.node.get_closest_marker("whole_domain") is None:
        from verify.layers.floating import tolerances

        monkeypatch.setattr(tolerances, "SWEEP_DOMAIN", PART_OF_THE_DOMAIN)


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    from verify.run import cache

    previous = cache.DEFAULT_DIRECTORY
    cache.DEFAULT_DIRECTORY = str(tmp_path_factory.mktemp("kl_verify_cache"))
    yield
    cache.DEFAULT_DIRECTORY = previous
