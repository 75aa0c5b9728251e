"""`python -m tradeguard`: the same as the `tradeguard` console script (and `python -m tradeguard.cli`).

Where the console script is not on PATH (a venv not activated, `pipx run`), `python -m` is what
a user tries first, with the package's own name.
"""

import sys

from tradeguard.cli import main

sys.exit(main())
