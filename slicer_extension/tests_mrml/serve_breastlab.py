"""Run a BreastLab server on the shipped samples for the session tests; run with the project's .venv Python.

Usage: ``python -m slicer_extension.tests_mrml.serve_breastlab WORKDIR`` from the project root (the harness is
``tests/server_process.py``). The server computes in float32 on every CPU (the tests pin scores), and its
``breast_us_acsnet`` has a BI-RADS model (``BIRADS``; the shipped inference config has none until calibrated).
Prints one JSON line ``{"url": ..., "log": ...}`` once the server answers, then serves until its standard input
closes, and stops the server.
"""

import json
import sys
from pathlib import Path

from breastlab.bundle import PROJECT_ROOT
from breastlab.server.datastore.studies import import_dataset

from tests.server_process import Server, bundles_folder

BIRADS = {"categories": ["2", "3", "4", "5"], "slope": 1.2, "cuts": [-4.0, -2.5, 2.0]}


def main(workdir: Path) -> None:
    import_dataset(PROJECT_ROOT / "samples" / "breast_lesions_usg", workdir / "studies")
    bundles = bundles_folder(workdir / "bundles", {"breast_us_acsnet": {"birads": BIRADS}})
    env = {"BREASTLAB_PRECISION": "fp32", "BREASTLAB_BUNDLES": str(bundles)}
    server = Server(workdir / "studies", workdir, env=env).start()
    try:
        print(json.dumps({"url": server.url, "log": str(server.log)}), flush=True)
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
