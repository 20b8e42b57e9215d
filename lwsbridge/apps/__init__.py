"""Test applications like libwebsockets' own: test-server, test-echo (and their helpers)."""
