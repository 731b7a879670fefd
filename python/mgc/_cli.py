"""The ``mgc`` command, as the package installs it: the Rust command line, run in this process."""

import sys

from ._mgc import main_with_args


def main() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(main_with_args(["mgc", *sys.argv[1:]]))
