"""Run by tests/test_sharing.py with the python of a fresh virtual environment that holds the breastlab wheel: each
unpacked bundle archive run and checked with MONAI's own tools, as a researcher would, in one process (``run`` is
what ``python -m monai.bundle run`` calls), and where ``breastlab`` came from.

    python archive_checks.py SCHEMA.json OUTPUTS BUNDLE_FOLDER ...   # prints a JSON report
"""

import json
import os
import sys

from monai.bundle import ckpt_export, run, verify_metadata, verify_net_in_out

import breastlab

FILES = {"meta_file": "configs/metadata.json", "config_file": "configs/inference.json"}


def check(folder: str, schema: str, output_dir: str) -> None:
    """Inference on the bundle's own sample into ``output_dir``, ``verify_metadata`` against ``schema``,
    ``verify_net_in_out``, and ``ckpt_export`` to models/model.ts."""
    os.chdir(folder)
    run(config_file=FILES["config_file"], output_dir=output_dir)
    verify_metadata(meta_file=FILES["meta_file"], filepath=schema)
    verify_net_in_out(net_id="network_def", **FILES)
    ckpt_export(net_id="network_def", filepath="models/model.ts", ckpt_file="models/model.pt", **FILES)


def main(schema: str, outputs: str, folders: list[str]) -> None:
    for folder in folders:
        check(folder, schema, os.path.join(outputs, os.path.basename(folder)))
    paths = [os.path.abspath(p) for p in sys.path]
    print(json.dumps({"breastlab_file": breastlab.__file__, "version": breastlab.__version__, "sys_path": paths}))


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), [os.path.abspath(f) for f in sys.argv[3:]])
