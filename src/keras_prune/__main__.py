"""`python -m keras_prune ...`: the `keras-prune` command without its script.

Same subcommands, arguments and exit codes as `keras-prune` (see
`keras_prune.cli`), for environments where the console script is not on
`PATH` (a virtual environment not activated, `pip install --target`).
"""

import sys

from keras_prune.cli import main

if __name__ == "__main__":
    sys.exit(main())
