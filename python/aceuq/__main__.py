"""``python -m aceuq ...`` and the ``aceuq`` script of the pip package: the command line, run by
the installed extension module (no separate binary needed)."""

import os
import signal
import sys

from ._native import cli


def main() -> None:
    try:
        sys.exit(cli(sys.argv[1:]))
    except KeyboardInterrupt:
        # The command stopped at its next stop point (it printed so). End as a process killed by
        # Ctrl-C, without a traceback, so that a shell loop around it stops too (a plain exit
        # code would only end this one command); 130 where a signal cannot do that.
        if hasattr(signal, "SIGINT") and hasattr(os, "kill"):
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        sys.exit(130)


if __name__ == "__main__":
    main()
