"""``python -m aceuq ...`` and the ``aceuq`` script of the pip package: the command line, run by
the installed extension module (no separate binary needed)."""

import sys

from ._native import cli


def main() -> None:
    try:
        sys.exit(cli(sys.argv[1:]))
    except KeyboardInterrupt:
        # The command stopped at its next stop point (it printed so); exit as a shell expects
        # of a process ended by Ctrl-C (128 + SIGINT), without a traceback.
        sys.exit(130)


if __name__ == "__main__":
    main()
