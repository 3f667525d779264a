"""nbval settings for the course notebooks.

nbval waits only 5 s for a cell's output messages after it finishes; on a busy 2-core machine that
is too short, so raise it (nbval 0.11 reads item.output_timeout on its cell items; set below).
"""

import os

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60
