"""``python -m agent19`` and the ``agent19`` command (the entry point pyproject.toml names: :func:`main`)."""

import gc


def main() -> int:
    """The command line (:func:`agent19.cli.main`), its modules imported with the cyclic collector paused and what
    they made frozen out of its generations (modules, classes, functions: kept until the process exits). Running,
    the collector re-scanned everything imported so far at each of the collections agent19.cli's imports (argparse,
    dataclasses, logging, the settings) set off: 4 % of a one-statement lint's instructions. The command's own
    modules are imported so too (:func:`agent19.cli._startup_parser`)."""
    gc.disable()
    try:
        from agent19.cli import main as command_line
    finally:
        gc.freeze()
        gc.enable()
    return command_line()


if __name__ == "__main__":
    raise SystemExit(main())
