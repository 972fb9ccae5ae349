"""Collection settings for the whole tree (tests/conftest.py holds the fixtures).

``pytest`` imports every module under src/ for its doctests; the trainer integrations import
their optional library (Lightning, transformers), so without that extra they are left out
instead of failing collection. ``make test`` installs every extra, so CI collects them all.
"""

import importlib.util

collect_ignore = [f"src/polarnet/integrations/{module}.py" for module, library in
                  (("lightning", "lightning"), ("pytorch_lightning", "pytorch_lightning"), ("hf", "transformers"))
                  if importlib.util.find_spec(library) is None]
