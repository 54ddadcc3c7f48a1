"""The command that starts MONAI Label's server with the BreastLab app (``breastlab serve``, the test harness)."""

from __future__ import annotations

import sys
from pathlib import Path

import monailabel


def server_command(app_dir: Path, studies: Path | str, host: str, port: int) -> list[str]:
    """``python -m monailabel.main start_server`` for the app, with its logging config written into the app's
    ``logs/`` (MONAI Label otherwise writes one into the temp folder at every start and leaves it there)."""
    logs = Path(app_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    template = (Path(monailabel.__file__).parent / "logging.json").read_text()
    config = logs / "logging.json"
    config.write_text(template.replace("${LOGDIR}", str(logs)).replace("${LOGFILE}", str(logs / "app.log")))
    return [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app_dir), "--studies",
            str(studies), "--host", host, "--port", str(port), "--log_config", str(config)]
