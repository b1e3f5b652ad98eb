"""``python -m aceuq ...`` and the ``aceuq`` script of the pip package: the command line, run by
the installed extension module (no separate binary needed)."""

import sys

from ._native import cli


def main() -> None:
    sys.exit(cli(sys.argv[1:]))


if __name__ == "__main__":
    main()
