"""Root of the test tree.

Test directories have no ``__init__.py`` and pytest uses the default "prepend" import
mode, so importing this conftest puts ``tests/`` on ``sys.path``: the shared helpers are
then importable as ``from support import ...`` (see ``tests/support/``).
"""
