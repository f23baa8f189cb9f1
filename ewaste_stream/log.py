"""Logging set-up (loguru), called once from the CLI. Library code just does
``from loguru import logger`` and never configures sinks itself."""

from __future__ import annotations

import sys
from pathlib import Path

from loguru import logger

_FORMAT = "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> <cyan>{name}</cyan> {message}"


def setup_logging(verbose: bool = False, file: str | Path | None = None, rotation: str = "50 MB",
                  retention: int = 10) -> None:
    """stderr sink (INFO, or DEBUG with ``verbose``) plus an optional rotating file sink."""
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if verbose else "INFO", format=_FORMAT, backtrace=False, diagnose=False)
    if file is not None:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        logger.add(str(file), level="DEBUG", rotation=rotation, retention=retention, enqueue=True,
                   backtrace=False, diagnose=False)
