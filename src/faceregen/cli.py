"""`faceregen <subcommand>`: one dispatcher over the Hydra apps and the argparse tools.

`train` and `eval` are Hydra apps (overrides, `--cfg job`, `-m` all work); `regen` and `data`
use argparse. Every app is a thin wrapper over a plain function that the tests call directly.
Heavy imports (torch) happen inside the subcommand so that `faceregen --help` stays quick.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

from faceregen.errors import FaceregenError

# name -> (one-line help, "module:function" taking the remaining argv)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train a model (Hydra app: faceregen train +experiment=celebamask)",
              "faceregen.cli:train_main"),
    "eval": ("evaluate a checkpoint: attribute/segmentation accuracy, FID (Hydra app)",
             "faceregen.cli:eval_main"),
    "evaluators": ("train the evaluator networks (face parser, attribute classifier)",
                   "faceregen.evaluation.cli:main"),
    "regen": ("regenerate a face from a mask and a reference photo",
              "faceregen.regen.cli:main"),
    "studio": ("paint a mask in the browser and watch the face follow (local web server)",
               "faceregen.studio.cli:main"),
    "data": ("synthesise or prepare CelebAMask-HQ-layout datasets",
             "faceregen.data.cli:main"),
    "export": ("export EMA generator weights to safetensors", "faceregen.export:main"),
}


def usage() -> str:
    lines = ["usage: faceregen <subcommand> [args]", "", "subcommands:"]
    lines += [f"  {name:<10} {help_}" for name, (help_, _) in SUBCOMMANDS.items()]
    lines += ["", "`faceregen <subcommand> --help` describes each one."]
    return "\n".join(lines)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print a FaceregenError as one `error:` line and exit 2, without a traceback."""
    try:
        yield
    except FaceregenError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


class _HeldStderr:
    """stderr that holds what is written until the Hydra task starts.

    Hydra reports a bad override or a misspelt key itself, over several lines with exit
    status 1, before the task runs; holding that text lets :func:`_hydra_app` turn it into
    one `error:` line and exit 2 like every other command. From the task's start everything
    passes straight through (the logging handlers Hydra made meanwhile keep this object).
    """

    def __init__(self, stream):
        self.stream = stream
        self.holding = True
        self.held: list[str] = []

    def write(self, text: str) -> int:
        if self.holding:
            self.held.append(text)
            return len(text)
        return self.stream.write(text)

    def flush(self) -> None:
        if not self.holding:
            self.stream.flush()

    def release(self) -> str:
        """Stop holding; return what was held."""
        self.holding = False
        text, self.held = "".join(self.held), []
        return text

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def hydra_error_lines(text: str) -> list[str]:
    """Hydra's composition error as ``error: <first line>`` and its other lines indented."""
    lines = [line for line in text.strip().splitlines()
             if line.strip() and "HYDRA_FULL_ERROR" not in line]
    if not lines:
        return ["error: the configuration could not be composed"]
    return [f"error: {lines[0].strip()}"] + [f"  {line.rstrip()}" for line in lines[1:]]


def _hydra_app(config_name: str, task: str, argv: list[str]) -> None:
    """Run ``task`` ("module:function", imported lazily) as a Hydra app on ``argv``."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from faceregen.config import config_dir

    stderr = sys.stderr
    held = _HeldStderr(stderr)

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=config_name)
    def app(cfg) -> None:
        # No closure over the held stream: launchers such as submitit pickle this function.
        if isinstance(sys.stderr, _HeldStderr):
            sys.stderr.stream.write(sys.stderr.release())
        module_name, func_name = task.split(":")
        with user_errors():
            func = getattr(importlib.import_module(module_name), func_name)
            func(cfg, Path(HydraConfig.get().runtime.output_dir))

    sys.argv = [f"faceregen-{config_name}", *argv]
    sys.stderr = held
    try:
        app()
    except SystemExit as exc:
        if held.holding and exc.code not in (0, None):
            text = held.release()
            print("\n".join(hydra_error_lines(text)), file=stderr, flush=True)
            sys.exit(2)
        raise
    finally:
        stderr.write(held.release())
        sys.stderr = stderr


def train_main(argv: list[str]) -> None:
    _hydra_app("train", "faceregen.cli:run_training", argv)


def run_training(cfg, run_dir: Path) -> None:
    """The train app's task. A run stopped by SIGINT or SIGTERM has saved a checkpoint and
    exits with 128 + the signal's number (130, 143), as a killed program would, so that a
    scheduler or `train && eval` does not take it for a finished one."""
    from faceregen.train.trainer import train

    summary = train(cfg, run_dir)
    if summary["exit_code"]:
        sys.exit(summary["exit_code"])


def eval_main(argv: list[str]) -> None:
    _hydra_app("eval", "faceregen.evaluation.runner:evaluate", argv)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown subcommand '{name}' (choose from {', '.join(SUBCOMMANDS)})",
              file=sys.stderr)
        sys.exit(2)
    module_name, func_name = SUBCOMMANDS[name][1].split(":")
    try:
        with user_errors():
            func = getattr(importlib.import_module(module_name), func_name)
            func(rest)
    except KeyboardInterrupt:  # what was written is complete: every write is atomic
        print(f"faceregen {name}: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
