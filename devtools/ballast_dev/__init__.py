"""Ballast's development tools: the local cluster and its node agent, the demo, synthetic documents
and the helpers the test suites and benchmarks share. Never installed in an image; the operator
package (`ballast`) never imports this one (an import-linter contract holds it).

It runs from a checkout (an editable install): REPO is that checkout's root.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
