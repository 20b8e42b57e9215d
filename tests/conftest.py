"""Root of the test tree.

Test directories have no ``__init__.py`` and pytest uses the default "prepend" import
mode, so importing this conftest puts ``tests/`` on ``sys.path``: the shared helpers are
then importable as ``from support import ...`` (see ``tests/support/``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Hypothesis profiles.  CI must not depend on which examples hypothesis happens to draw,
# so ``ci`` is derandomized (the same examples on every run, seeded from each test) and
# keeps no example database.  ``long`` is the randomized exploration run, ten times the
# examples: ``HYPOTHESIS_PROFILE=long python -m pytest tests/core/test_hypothesis.py``
# (README, "Development").  ``dev``, the default elsewhere, is randomized at CI's size.
# Every profile starts from hypothesis's own "default": without a parent a profile would
# inherit from whatever is loaded now, and hypothesis itself loads a derandomized "ci"
# profile when it sees CI set -- ``long`` would then silently stop being random.
_EXAMPLES = 200
_BASE = settings.get_profile("default")
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile(
    "ci",
    _BASE,
    max_examples=_EXAMPLES,
    derandomize=True,
    database=None,
    print_blob=True,
    **_COMMON,
)
settings.register_profile("dev", _BASE, max_examples=_EXAMPLES, derandomize=False, **_COMMON)
settings.register_profile(
    "long", _BASE, max_examples=10 * _EXAMPLES, derandomize=False, print_blob=True, **_COMMON
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
