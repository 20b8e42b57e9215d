"""Helpers shared by several test directories (peers, subprocesses, Autobahn runs).

Importable as ``support`` because ``tests/conftest.py`` puts ``tests/`` on ``sys.path``.
"""
