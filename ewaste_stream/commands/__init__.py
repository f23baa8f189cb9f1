"""One module per CLI sub-command.

Each module defines ``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``.
Modules import heavy packages (torch, timm, cv2, zmq) only inside ``run`` so that
``ewaste-stream --help`` stays fast.
"""

# name on the command line -> module in this package
COMMANDS: dict[str, str] = {
    "run": "run",
    "replay": "replay",
    "predict": "predict",
    "export": "export",
    "train": "train",
    "evaluate": "evaluate",
    "analyse": "analyse",
    "listen": "listen",
    "decisions": "decisions",
    "keys": "keys",
    "check-config": "check_config",
}
