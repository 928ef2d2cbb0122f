"""`mailbridge check-config`: line-numbered errors and a non-zero exit for a
broken file, exit 0 for a good one, and the shipped examples are valid."""

import subprocess
import shutil
import tempfile
import unittest
from pathlib import Path

from harness import BINARY

ROOT = Path(__file__).resolve().parents[2]


def check(path):
    return subprocess.run([BINARY, "check-config", "--config", str(path)],
                          capture_output=True, text=True, timeout=30)


class CheckConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="mb-cfg-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, text):
        p = self.dir / "mailbridge.yaml"
        p.write_text(text)
        return p

    def test_shipped_examples_are_valid(self):
        for name in ("mailbridge.yaml", "demo.yaml"):
            out = check(ROOT / "examples" / name)
            self.assertEqual(out.returncode, 0, name + ": " + out.stdout + out.stderr)
            self.assertIn("OK", out.stdout)

    def test_good_file(self):
        p = self.write(
            "server:\n  hostname: relay.test\n  state_dir: ./state\n"
            "listeners:\n  - address: 127.0.0.1:2525\n"
            "providers:\n  - name: out\n    type: outbox\n    directory: ./outbox\n")
        out = check(p)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("1 listener, 1 provider", out.stdout)

    def test_broken_file_lists_every_error_with_its_line(self):
        p = self.write(
            "server:\n"
            "  hostname: relay.test\n"
            "smtp:\n"
            "  max_mesage_size: 25MB\n"          # line 4: typo
            "  max_recipients: many\n"           # line 5: not a number
            "listeners:\n"
            "  - address: 127.0.0.1:99999\n"     # line 7: port out of range
            "providers:\n"
            "  - name: out\n"
            "    type: carrier-pigeon\n"         # line 10: unknown type
            "    directory: ./outbox\n")
        out = check(p)
        self.assertNotEqual(out.returncode, 0)
        err = out.stderr
        self.assertRegex(err, rf"{p}:4:\d+: smtp\.max_mesage_size: .*did you mean 'max_message_size'")
        self.assertRegex(err, rf"{p}:5:\d+: smtp\.max_recipients: ")
        self.assertRegex(err, rf"{p}:7:\d+: listeners\[0\]\.address: ")
        self.assertRegex(err, rf"{p}:10:\d+: providers\[0\]\.type: .*outbox")

    def test_yaml_syntax_error_has_a_line(self):
        p = self.write("server:\n  hostname: [unclosed\nproviders: []\n")
        out = check(p)
        self.assertNotEqual(out.returncode, 0)
        self.assertRegex(out.stderr, rf"{p}:\d+:\d+: ")

    def test_missing_file(self):
        out = check(self.dir / "nope.yaml")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("nope.yaml", out.stderr)

    def test_serve_refuses_a_broken_file(self):
        p = self.write("smtp:\n  idle_timeout: soon\nproviders: []\n")
        out = subprocess.run([BINARY, "serve", "--config", str(p)],
                             capture_output=True, text=True, timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertRegex(out.stderr, rf"{p}:2:\d+: smtp\.idle_timeout: ")

    def test_version(self):
        out = subprocess.run([BINARY, "version"], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0)
        self.assertRegex(out.stdout, r"^mailbridge \d+\.\d+\.\d+")


if __name__ == "__main__":
    unittest.main()
