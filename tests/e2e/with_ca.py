"""A test CA per test class, for the end-to-end tests against the TLS fakes
(Microsoft, Google)."""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))

from test_ca import TestCA  # noqa: E402


class WithTestCA(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ca = TestCA()

    @classmethod
    def tearDownClass(cls):
        cls.ca.cleanup()
